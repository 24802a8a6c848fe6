"""The official openai Python SDK against the gateway, as an application would use it: one scenario
per run (argv: scenario, base URL, key), its outcome printed as one JSON line for the test to read."""
import json
import sys
import time

import openai

scenario, base_url, key = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
messages = [{"role": "user", "content": "hi"}]


def outcome():
    if scenario == "stream":
        stream = client.chat.completions.create(
            model="fake-model", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        return {
            "text": "".join((c.choices[0].delta.content or "") for c in chunks if c.choices),
            "role": chunks[0].choices[0].delta.role,
            "finish": [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
            "usage": chunks[-1].usage.total_tokens if chunks[-1].usage else None,
        }
    if scenario == "complete":
        completion = client.chat.completions.create(model="fake-model", messages=messages)
        return {"text": completion.choices[0].message.content, "object": completion.object}
    if scenario == "models":
        return {"ids": [m.id for m in client.models.list()]}
    if scenario == "responses-stream":
        with client.responses.stream(model="fake-model", instructions="be brief", input="hi") as stream:
            events = list(stream)
            final = stream.get_final_response()
        return {
            "text": "".join(e.delta for e in events if e.type == "response.output_text.delta"),
            "first": [e.type for e in events[:2]],
            "last": events[-1].type,
            "numbered": [e.sequence_number for e in events] == list(range(len(events))),
            "output_text": final.output_text,
            "status": final.status,
            "usage": final.usage.total_tokens if final.usage else None,
        }
    if scenario == "responses-create":
        response = client.responses.create(
            model="fake-model",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            max_output_tokens=100,
        )
        return {"object": response.object, "status": response.status, "output_text": response.output_text}
    if scenario == "stored":
        # The stored side's main flow with the SDK's own methods.
        first = client.responses.create(model="fake-model", input="I am Ada.")
        second = client.responses.create(model="fake-model", input="Who am I?", previous_response_id=first.id)
        got = client.responses.retrieve(second.id)
        inputs = client.responses.input_items.list(second.id)
        conversation = client.conversations.create(
            metadata={"topic": "names"}, items=[{"type": "message", "role": "user", "content": "hello"}]
        )
        on_it = client.responses.create(model="fake-model", input="more", conversation=conversation.id)
        added = client.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": "added"}]
        )
        item = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
        listed = client.conversations.items.list(conversation.id, order="asc")
        client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
        after_delete = client.conversations.items.list(conversation.id, order="asc")
        updated = client.conversations.update(conversation.id, metadata={"topic": "other"})
        retrieved = client.conversations.retrieve(conversation.id)
        deleted = client.conversations.delete(conversation.id)
        client.responses.delete(first.id)
        try:
            client.responses.retrieve(first.id)
            gone = None
        except openai.NotFoundError as error:
            gone = error.status_code
        return {
            "same": got.id == second.id and got.output_text == second.output_text,
            "previous": got.previous_response_id == first.id,
            "inputs": [i.content[0].text for i in inputs.data],
            "conversation": on_it.conversation.id == conversation.id if on_it.conversation else False,
            "item": item.content[0].text,
            "items": [i.type + ":" + i.role for i in listed.data],
            "after_delete": len(after_delete.data),
            "metadata": [updated.metadata, retrieved.metadata],
            "deleted": deleted.deleted,
            "gone": gone,
        }
    if scenario == "responses-background":
        # A background stream dropped after three pieces of text, resumed from the last event seen.
        stream = client.responses.create(model="fake-model", input="hi", background=True, stream=True)
        seen = []
        for event in stream:
            seen.append(event)
            if sum(e.type == "response.output_text.delta" for e in seen) == 3:
                break
        stream.close()
        response_id = seen[0].response.id
        rest = list(client.responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number))
        events = seen + rest
        # Polled: a background response without stream, then cancelling it once it ended.
        polled = client.responses.create(model="fake-model", input="hi", background=True)
        first_status = polled.status
        while polled.status in ("queued", "in_progress"):
            time.sleep(0.05)
            polled = client.responses.retrieve(polled.id)
        return {
            "text": "".join(e.delta for e in events if e.type == "response.output_text.delta"),
            "numbered": [e.sequence_number for e in events] == list(range(len(events))),
            "last": events[-1].type,
            "background": seen[0].response.background,
            "first_status": first_status,
            "polled": [polled.status, polled.output_text],
            "cancel_after_end": client.responses.cancel(polled.id).status,
        }
    try:
        if scenario == "bad-request":
            client.chat.completions.create(model="fake-model", messages=[{"role": "wizard", "content": "hi"}])
        elif scenario == "unauthenticated":
            client.models.list()
        elif scenario == "responses-refused":
            client.responses.create(model="fake-model", input="hi", previous_response_id="resp_123")
        elif scenario == "responses-mid-stream":
            for _ in client.responses.create(model="fake-model", input="hi", stream=True):
                pass
        elif scenario == "mid-stream":
            for _ in client.chat.completions.create(model="fake-model", messages=messages, stream=True):
                pass
        return {"raised": None}
    except openai.APIStatusError as error:
        return {"raised": type(error).__name__, "status": error.status_code, "body": error.body}
    except openai.APIError as error:
        return {"raised": type(error).__name__, "message": error.message}


print(json.dumps(outcome()))
