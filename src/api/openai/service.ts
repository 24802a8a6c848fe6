// chat.v1.OpenAIService: the OpenAI API on the chat pipeline. Each method decodes OpenAI's JSON
// (carried as google.api.HttpBody through Envoy's transcoder) into what the gateway already
// serves, and presents the answer in OpenAI's shape: Chat Completions and Responses go through the
// chat service's stream (the same validation, limits, upstream, retries, fallback, cancellation,
// heartbeats and bookkeeping as Chat); the models come from ListModels' catalog.
import { jsonBody } from "./bodies.js";
import { Metadata, status, type handleUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { CallContext } from "../../chat/context.js";
import type { ModelCatalog } from "../../chat/models.js";
import type { AnyCall } from "../../chat/outbox.js";
import type { ChatService } from "../../chat/service.js";
import type {
  ChatRequest,
  HttpBody,
  ListOpenAIModelsRequest,
  OpenAIServiceServer,
  RetrieveOpenAIModelRequest,
} from "../../contract/chat.js";
import { ChatChunkPresenter, ChatCompletionPresenter } from "./chat-chunks.js";
import { decodeChatCompletion } from "./chat-request.js";
import { modelList, modelOf } from "./models.js";
import { ResponseEventPresenter, ResponseObjectPresenter, type ResponseOptions } from "./responses-events.js";
import { decodeResponseRequest, type DecodedResponseRequest } from "./responses-request.js";
import { followerOf, idsFor, streamIdOf } from "./background.js";
import { storedHandlers, type OpenAIStorage } from "./stored.js";
import { randomBytes } from "node:crypto";

export interface OpenAIServiceDeps {
  chat: ChatService;
  catalog: ModelCatalog;
  /** Each call's context, as Chat's (server/call-context.ts). */
  contextOf: (call: AnyCall, request: ChatRequest) => CallContext;
  defaultModel: string;
  logger: Logger;
  /** Stored responses and conversations (server/: the conversation store). */
  storage: OpenAIStorage;
}

export function openAIService(deps: OpenAIServiceDeps): OpenAIServiceServer {
  const { chat, catalog, contextOf, logger } = deps;
  /**
   * `background: true`: a resumable stream under the response's own id (background.ts), its row
   * written before it starts. Streamed, this call is its first reader; not streamed, it answers at
   * once with the response in progress, and the generation runs on.
   */
  function background(call: ServerWritableStream<HttpBody, HttpBody>, decoded: DecodedResponseRequest, id: string) {
    const createdAt = Math.floor(Date.now() / 1000);
    // Each presenter names the items itself: ids from the response id, the same in every reading.
    const optionsOf = (): ResponseOptions => ({
      id,
      model: decoded.request.model || deps.defaultModel,
      echo: decoded.echo,
      newId: idsFor(id),
      storage: {
        store: true,
        ...(decoded.previousResponseId !== undefined && { previousResponseId: decoded.previousResponseId }),
        ...(decoded.conversation !== undefined && { conversation: decoded.conversation.id }),
      },
      background: { createdAt },
    });
    const follower = followerOf(optionsOf());
    const history = deps.storage.historyFor({
      responseId: id,
      store: true,
      previousResponseId: decoded.previousResponseId,
      conversationUuid: decoded.conversation?.uuid,
      hasInstructions: decoded.hasInstructions,
      presenter: follower.presenter,
      background: { follow: follower.follow },
    });
    const presenter = decoded.stream
      ? new ResponseEventPresenter(optionsOf())
      : new ResponseObjectPresenter(optionsOf());
    const started = () => {
      call.write(jsonBody(follower.presenter.initial()));
      call.end();
    };
    const anyCall = call as AnyCall;
    chat
      .serve(anyCall, contextOf(anyCall, decoded.request), decoded.request, presenter, undefined, history, {
        streamId: streamIdOf(id),
        ...(!decoded.stream && { detached: { started } }),
      })
      .catch((error: unknown) => logger.error({ err: error }, "background response handler failed"));
  }

  return {
    createChatCompletion(call: ServerWritableStream<HttpBody, HttpBody>) {
      const decoded = decodeChatCompletion(call.request.data);
      const model = decoded.request.model || deps.defaultModel;
      const presenter = decoded.stream
        ? new ChatChunkPresenter({ model, includeUsage: decoded.includeUsage })
        : new ChatCompletionPresenter({ model });
      const anyCall = call as AnyCall;
      chat
        .serve(anyCall, contextOf(anyCall, decoded.request), decoded.request, presenter, decoded.problem)
        .catch((error: unknown) => logger.error({ err: error }, "chat completion handler failed"));
    },
    createResponse(call: ServerWritableStream<HttpBody, HttpBody>) {
      const decoded = decodeResponseRequest(call.request.data);
      const id = `resp_${randomBytes(16).toString("hex")}`;
      if (decoded.background && decoded.problem === undefined) return background(call, decoded, id);
      const options = {
        id,
        model: decoded.request.model || deps.defaultModel,
        echo: decoded.echo,
        storage: {
          store: decoded.store,
          ...(decoded.previousResponseId !== undefined && { previousResponseId: decoded.previousResponseId }),
          ...(decoded.conversation !== undefined && { conversation: decoded.conversation.id }),
        },
      };
      const presenter = decoded.stream ? new ResponseEventPresenter(options) : new ResponseObjectPresenter(options);
      // Kept, or given history: the response's own history and recorder; otherwise nothing is read or written.
      const history =
        decoded.problem === undefined &&
        (decoded.store || decoded.previousResponseId !== undefined || decoded.conversation !== undefined)
          ? deps.storage.historyFor({
              responseId: id,
              store: decoded.store,
              previousResponseId: decoded.previousResponseId,
              conversationUuid: decoded.conversation?.uuid,
              hasInstructions: decoded.hasInstructions,
              presenter,
            })
          : undefined;
      const anyCall = call as AnyCall;
      chat
        .serve(anyCall, contextOf(anyCall, decoded.request), decoded.request, presenter, decoded.problem, history)
        .catch((error: unknown) => logger.error({ err: error }, "response handler failed"));
    },
    ...storedHandlers(deps.storage, chat),
    listOpenAiModels: models(catalog, logger, () => modelList),
    retrieveOpenAiModel: models(catalog, logger, (request: RetrieveOpenAIModelRequest) => modelOf(request.model)),
  };
}

type Render = (models: { id: string; ownedBy: string }[]) => object | undefined;

/** A unary models method: the catalog's list, rendered; undefined from `render` is NOT_FOUND. */
function models<Request extends ListOpenAIModelsRequest | RetrieveOpenAIModelRequest>(
  catalog: ModelCatalog,
  logger: Logger,
  renderFor: (request: Request) => Render,
): handleUnaryCall<Request, HttpBody> {
  return (call, callback) => {
    catalog.list().then(
      (listed) => {
        const body = renderFor(call.request)(listed.models);
        if (body === undefined) {
          const details = `model: no model named ${JSON.stringify((call.request as RetrieveOpenAIModelRequest).model)}`;
          callback({ code: status.NOT_FOUND, details, metadata: new Metadata() });
          return;
        }
        callback(null, jsonBody(body));
      },
      (error: unknown) => {
        logger.error({ err: error }, "listing models failed");
        callback({ code: status.INTERNAL, details: "internal error" });
      },
    );
  };
}
