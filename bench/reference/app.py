"""The reference endpoint this gateway replaces, as the seed article writes it (shared/reference/
seed-article.md, section 1): FastAPI, AsyncOpenAI, and `POST /chat {"text": ...}` answering with the
deltas as a StreamingResponse of media type text/event-stream. As in the article, each delta is
written as is, without `data:` framing.

Only what the article leaves out is filled in: the client comes from the environment
(OPENAI_BASE_URL, OPENAI_API_KEY, CHAT_MODEL) and is put on request.state through FastAPI's lifespan
state, which is where the article's `request.state.openai_client` reads it from. The benchmark runs it
with uvicorn's defaults: one worker, one process.
"""

import os
from contextlib import asynccontextmanager
from typing import AsyncGenerator, AsyncIterator

from fastapi import Body, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

MODEL = os.environ.get("CHAT_MODEL", "yi-medium")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    # AsyncOpenAI reads OPENAI_BASE_URL and OPENAI_API_KEY from the environment.
    client = AsyncOpenAI()
    yield {"openai_client": client}
    await client.close()


app = FastAPI(lifespan=lifespan)


async def generate(client: AsyncOpenAI, text: str) -> AsyncGenerator[str, None]:
    stream: AsyncStream[ChatCompletionChunk] = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        stream=True,
    )
    async for event in stream:
        current_response = event.choices[0].delta.content
        if current_response:
            yield current_response


@app.post("/chat")
async def chat(
    request: Request,
    text: str = Body(..., embed=True),
) -> Response:
    stream = generate(request.state.openai_client, text)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
            "X-Accel-Buffering": "no",
        },
    )
