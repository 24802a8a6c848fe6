// Caller-key metadata and a promise-returning GetUsage for tests.
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { GetUsageRequest, type ChatServiceClient, type GetUsageResponse } from "../../src/gen/chat/v1/chat.js";

export const bearer = (key: string) => {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${key}`);
  return metadata;
};

export function getUsage(client: ChatServiceClient, metadata: Metadata): Promise<GetUsageResponse> {
  return new Promise((resolve, reject) =>
    client.getUsage(
      GetUsageRequest.fromPartial({}),
      metadata,
      (error: ServiceError | null, response: GetUsageResponse) => (error ? reject(error) : resolve(response)),
    ),
  );
}
