"""Reading a request body in bounded steps: raw, chunked or gzip/deflate-encoded.

The gateway asks for exactly the bytes the inference header declares, so a body is never read, and a
compressed one never inflated, past what the request may hold: zlib inflates at most the bytes still
wanted (`decompressobj().decompress(data, max_length)`), whatever the compression ratio. Raw bytes are
counted against a cap too, so a chunked body without a length cannot stream forever. Every read waits at
most `idle_timeout` for the next bytes and never past the body's deadline: a stalled or trickling upload is
answered 408 and its connection closed, and what it held is freed.
"""

from __future__ import annotations

import asyncio
import time
import zlib

from .limits import Refused

ENCODINGS = ("identity", "gzip", "deflate", "x-gzip")


class BodyReader:
    """`stream` is an aiohttp StreamReader (anything with `async readany() -> bytes`, b'' at the end)."""

    def __init__(self, stream, encoding: str, raw_cap: int, idle_timeout: float = 5.0,
                 total_timeout: float = 60.0) -> None:
        encoding = (encoding or "identity").strip().lower()
        if encoding not in ENCODINGS:
            raise Refused(f"Content-Encoding {encoding!r} is not accepted; send the body as it is, or gzip or "
                          "deflate it", status=415)
        self._stream, self._raw_cap, self.raw_bytes = stream, raw_cap, 0
        self._idle, self._deadline = idle_timeout, time.monotonic() + total_timeout
        # gzip or zlib-wrapped deflate, told apart by the header (32 + 15)
        self._inflater = None if encoding == "identity" else zlib.decompressobj(32 + 15)
        self._left = b""

    @property
    def identity(self) -> bool:
        return self._inflater is None

    async def _raw_chunk(self) -> bytes:
        wait = min(self._idle, self._deadline - time.monotonic())
        if wait <= 0:
            raise Refused("the request body took too long to arrive; send it at network speed", status=408)
        try:
            chunk = await asyncio.wait_for(self._stream.readany(), wait)
        except asyncio.TimeoutError:
            raise Refused(f"the request body stalled (no bytes for {wait:.0f} s)", status=408) from None
        self.raw_bytes += len(chunk)
        if self.raw_bytes > self._raw_cap:
            raise Refused(f"the request body is above {self._raw_cap} bytes, the most this model takes", status=413)
        return chunk

    async def _piece(self, limit: int) -> bytes:
        """Up to `limit` (> 0) more bytes of the decoded body (raw chunks may be longer); b'' at its end."""
        if self._left:
            piece, self._left = self._left, b""
            return piece
        if self._inflater is None:
            return await self._raw_chunk()
        while True:
            inflater = self._inflater
            if inflater.unconsumed_tail:
                piece = inflater.decompress(inflater.unconsumed_tail, limit)
            elif inflater.eof:
                if inflater.unused_data or await self._raw_chunk():
                    raise Refused("the request body holds bytes after the end of its compressed data")
                return b""
            else:
                chunk = await self._raw_chunk()
                if not chunk:
                    raise Refused("the compressed request body ends before its compressed data does")
                try:
                    piece = inflater.decompress(chunk, limit)
                except zlib.error as exc:
                    raise Refused(f"the request body is not valid gzip or deflate data ({exc})") from None
            if piece:
                return piece

    async def read(self, size: int, what: str) -> list[bytes]:
        """Exactly `size` bytes of the decoded body, as pieces (joined once by the caller)."""
        pieces, have = [], 0
        while have < size:
            piece = await self._piece(size - have)
            if not piece:
                raise Refused(f"the request body ends {size - have} bytes short of {what}")
            if have + len(piece) > size:
                piece, self._left = piece[:size - have], piece[size - have:]
            pieces.append(piece)
            have += len(piece)
        return pieces

    async def read_to_end(self, cap: int) -> bytes:
        """The rest of the decoded body; Refused (413) as soon as it passes `cap`."""
        pieces, have = [], 0
        while True:
            piece = await self._piece(cap + 1 - have)
            if not piece:
                return b"".join(pieces)
            have += len(piece)
            if have > cap:
                raise Refused(f"a JSON inference request may hold at most {cap} bytes; send larger tensors with the "
                              "binary data extension or over gRPC", status=413)
            pieces.append(piece)

    async def expect_end(self) -> None:
        if await self._piece(1):
            raise Refused("the request body holds more bytes than its inference header declares")
