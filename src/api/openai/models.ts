// ListModels' catalog in OpenAI's shapes: `GET /v1/models` and `GET /v1/models/{id}`. Upstreams
// do not say when a model was made; `created` is 0 rather than a made-up date.

interface Listed {
  id: string;
  ownedBy: string;
}

function model(m: Listed) {
  return { id: m.id, object: "model", created: 0, owned_by: m.ownedBy || "chat-gateway" };
}

export function modelList(models: Listed[]) {
  return { object: "list", data: models.map(model) };
}

/** The one model named `id`, or undefined. */
export function modelOf(id: string) {
  return (models: Listed[]) => {
    const found = models.find((m) => m.id === id);
    return found && model(found);
  };
}
