"""Play the phone network side of a test Kannel, standing in for its ``fakesmsc`` tool.

Adapted from the checked recipe's ``smsc_client.py``. It connects to bearerbox's ``smsc = fake``
listener and speaks its line protocol, ``<sender> <receiver> <type> <data>\\n``:

* MT (bearerbox to us), as Kannel 1.4.5 writes it:
  ``text <raw>`` (GSM-7 text, raw UTF-8, not encoded), ``data <urlenc>``, ``ucs-2 <urlenc>``
  (UTF-16BE) or ``udh <urlenc udh> data <urlenc payload>`` for a part of a concatenated message.
  URL-encoding uses ``+`` for space.
* MO (us to bearerbox): ``ucs2 <urlenc UTF-16BE>``, like a real handset sending Chinese.

Limits of the protocol, not of this client: a ``udh`` line does not say its coding, so
reassembled messages are decoded as UTF-16BE when every non-final part is exactly 134 octets
(Kannel's UCS-2 part size) and the bytes are valid UTF-16, otherwise as UTF-8 (Kannel's internal
form of GSM-7 text). A raw ``text`` MT containing a newline breaks the line framing; such
continuation lines are recorded in :attr:`FakeSmsc.protocol_errors` instead of being guessed at.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from dataclasses import dataclass
from typing import Literal

__all__ = ["FakeSmsc", "MtMessage"]

UCS2_PART_OCTETS = 134


def _unquote(data: str) -> bytes:
    return urllib.parse.unquote_to_bytes(data.replace("+", " "))


@dataclass(frozen=True, slots=True)
class MtMessage:
    """Hold one mobile-terminated message as the handset would show it, after reassembly."""

    sender: str
    receiver: str
    text: str
    parts: int
    coding: Literal["gsm7", "ucs2", "8bit"]


class FakeSmsc:
    """Read MTs (reassembling concatenated parts) and inject MOs over the fake SMSC protocol.

    A background task reads lines into a queue, so MTs are never lost between ``next_mt`` calls.
    ``close()`` drops the TCP connection (bearerbox then reports the SMSC as re-connecting and
    queues MTs); ``connect()`` on the same object reconnects and keeps the queue.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host
        self.protocol_errors: list[str] = []
        self.raw_lines: list[str] = []
        self._messages: asyncio.Queue[MtMessage] = asyncio.Queue()
        self._partial: dict[tuple[str, str, int, int], dict[int, bytes]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Tell whether the TCP connection is open (bearerbox may not have noticed yet)."""
        return self._reader_task is not None and not self._reader_task.done()

    async def connect(self) -> None:
        """Open the connection to bearerbox's fake SMSC port (one client at a time)."""
        if self.connected:
            return
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._reader_task = asyncio.create_task(self._read_loop(reader), name="fake-smsc-reader")

    async def close(self) -> None:
        """Close the connection and stop the reader; queued MTs stay readable."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None

    async def send_mo(self, sender: str, receiver: str, text: str) -> None:
        """Inject a mobile-originated SMS, encoded as UCS-2 like a handset sending Chinese."""
        if self._writer is None:
            raise RuntimeError("fake SMSC is not connected")
        if " " in sender or " " in receiver:
            raise ValueError("sender and receiver must not contain spaces")
        data = urllib.parse.quote_from_bytes(text.encode("utf-16-be"), safe="")
        self._writer.write(f"{sender} {receiver} ucs2 {data}\n".encode())
        await self._writer.drain()

    async def next_mt(self, timeout: float) -> tuple[str, str, str]:  # noqa: ASYNC109 (API)
        """Return the next complete MT as ``(sender, receiver, text)``."""
        message = await self.next_mt_message(timeout)
        return message.sender, message.receiver, message.text

    async def next_mt_message(self, timeout: float) -> MtMessage:  # noqa: ASYNC109
        """Return the next complete MT with its part count and coding."""
        return await asyncio.wait_for(self._messages.get(), timeout)

    def pending(self) -> int:
        """Return how many complete MTs are waiting to be read."""
        return self._messages.qsize()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self._handle_line(line.decode("utf-8", "surrogateescape").rstrip("\n"))

    def _handle_line(self, line: str) -> None:
        self.raw_lines.append(line)
        fields = line.split(" ", 3)
        if len(fields) < 3 or fields[2] not in ("text", "data", "ucs-2", "udh"):
            self.protocol_errors.append(line)
            return
        sender, receiver, kind = fields[:3]
        rest = fields[3] if len(fields) == 4 else ""
        if kind == "text":
            self._messages.put_nowait(MtMessage(sender, receiver, rest, 1, "gsm7"))
        elif kind == "ucs-2":
            text = _unquote(rest).decode("utf-16-be", "surrogatepass")
            self._messages.put_nowait(MtMessage(sender, receiver, text, 1, "ucs2"))
        elif kind == "data":
            payload = _unquote(rest)
            try:
                self._messages.put_nowait(
                    MtMessage(sender, receiver, payload.decode("utf-8"), 1, "gsm7")
                )
            except UnicodeDecodeError:
                text = payload.decode("latin-1")
                self._messages.put_nowait(MtMessage(sender, receiver, text, 1, "8bit"))
        else:
            udh_field, _, data = rest.partition(" data ")
            udh = _unquote(udh_field)
            # 8-bit concatenation IE: 05 00 03 <ref> <total> <seq>
            if len(udh) < 6 or udh[1] != 0x00:
                self.protocol_errors.append(line)
                return
            ref, total, seq = udh[3], udh[4], udh[5]
            key = (sender, receiver, ref, total)
            parts = self._partial.setdefault(key, {})
            parts[seq] = _unquote(data)
            if len(parts) == total:
                del self._partial[key]
                ordered = [parts[i] for i in sorted(parts)]
                text, coding = _decode_parts(ordered)
                self._messages.put_nowait(MtMessage(sender, receiver, text, total, coding))


def _decode_parts(parts: list[bytes]) -> tuple[str, Literal["gsm7", "ucs2"]]:
    payload = b"".join(parts)
    if all(len(p) == UCS2_PART_OCTETS for p in parts[:-1]) and len(payload) % 2 == 0:
        try:
            return payload.decode("utf-16-be"), "ucs2"
        except UnicodeDecodeError:
            pass
    return payload.decode("utf-8", "replace"), "gsm7"
