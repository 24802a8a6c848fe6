// docker-compose.yml cannot be run here (no Docker engine), so it is kept right by construction:
// these checks tie it to envoy.yaml, the Dockerfile, the setup script and the config schema.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ROOT } from "../src/dev/envoy.js";
import { CONFIG_VARIABLES, loadConfig } from "../src/config.js";

const read = (file: string) => readFileSync(join(ROOT, file), "utf8");
const compose = parse(read("docker-compose.yml"));
const envoy = parse(read("envoy.yaml"));
const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const transcoder = hcm.http_filters.find((f: { name: string }) => f.name === "envoy.filters.http.grpc_json_transcoder").typed_config;

describe("docker-compose.yml", () => {
  it("runs the envoyproxy/envoy image of the version the tests run", () => {
    const version = /ENVOY_VERSION=([\d.]+)/.exec(read("scripts/setup.sh"))?.[1];
    expect(compose.services.envoy.image).toBe(`envoyproxy/envoy:v${version}`);
  });

  it("gives Envoy the same envoy.yaml and the descriptor at the path envoy.yaml names", () => {
    const { working_dir: dir, volumes, command } = compose.services.envoy;
    expect(volumes).toContain("./envoy.yaml:/app/envoy.yaml:ro");
    expect(volumes).toContain(`./${transcoder.proto_descriptor}:${dir}/${transcoder.proto_descriptor}:ro`);
    expect(command.slice(0, 3)).toEqual(["envoy", "-c", "/app/envoy.yaml"]);
  });

  it("puts Envoy in the service's network namespace, where envoy.yaml expects the service", () => {
    expect(compose.services.envoy.network_mode).toBe("service:chat");
    const endpoint = envoy.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(endpoint.address).toBe("127.0.0.1");
    expect(endpoint.port_value).toBe(loadConfig({}).grpc.port);
    const listener = envoy.static_resources.listeners[0].address.socket_address.port_value;
    expect(compose.services.chat.ports).toEqual(expect.arrayContaining([`${endpoint.port_value}:${endpoint.port_value}`, expect.stringMatching(`^${listener}:${listener}`)]));
  });

  it("sets only variables the service's configuration accepts, with valid defaults", () => {
    const env: Record<string, string> = compose.services.chat.environment;
    for (const name of Object.keys(env)) expect(CONFIG_VARIABLES).toContain(name);
    const defaults = Object.fromEntries(
      Object.entries(env).map(([k, v]) => [k, /:-([^}]*)\}/.exec(v)?.[1] ?? "sk-placeholder"]),
    );
    expect(() => loadConfig(defaults)).not.toThrow();
  });

  it("builds the image with the descriptor where the service reads it", () => {
    expect(read("Dockerfile")).toContain(`COPY --from=build /app/${transcoder.proto_descriptor} ${transcoder.proto_descriptor}`);
  });
});
