"""Test KannelGateway against a real Kannel 1.4.5 (marked ``kannel``) and a scripted stub."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kannel_gateway import TIMEOUT, KannelLab, StartKannel

from channels.sms.commands import Command, parse
from channels.sms.gateway import SendResult, SmsGateway
from channels.sms.kannel import KannelGateway, parse_dlr
from channels.sms.text import compose, segments

SENDER = "12345"
PHONE = "+8613800000001"
ZH_BODY = (
    "据县气象台预报，今夜至明日白天我县将出现特大暴雨，局地伴有雷电和短时强降水。"
    "请沿河、低洼地带及地质灾害隐患点群众立即转移到安全区域，不要涉水过河，"
    "不要在危房内停留。转移安置点：县第一中学、城关镇中心小学。如需帮助请拨打12345。"
)


@dataclass
class Callbacks:
    """Collect Kannel's HTTP callbacks (MO at /sms/inbound, DLR at /dlr) in queues."""

    server: TestServer
    inbound: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)
    dlr: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)

    def url(self, path: str) -> str:
        """Return the absolute loopback URL of ``path`` on the callback server."""
        return str(self.server.make_url(path))


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    """Run a local aiohttp server on a free port that records MO and DLR callbacks."""
    app = web.Application()
    server = TestServer(app, host="127.0.0.1", port=0)
    cb = Callbacks(server)

    def recorder(queue: asyncio.Queue[dict[str, str]]) -> web.RequestHandler:
        async def handler(request: web.Request) -> web.Response:
            queue.put_nowait(dict(request.query))
            return web.Response(text="")  # empty body: smsbox sends no reply SMS

        return handler

    app.router.add_get("/sms/inbound", recorder(cb.inbound))
    app.router.add_get("/dlr", recorder(cb.dlr))
    await server.start_server()
    try:
        yield cb
    finally:
        await server.close()


@pytest.fixture
async def lab(
    tmp_path: Path, callbacks: Callbacks, kannel: StartKannel
) -> AsyncIterator[KannelLab]:
    """Run Kannel with its MO get-url pointing at the callback server's /sms/inbound."""
    async with kannel(tmp_path, mo_url=callbacks.url("/sms/inbound")) as running:
        yield running


@pytest.fixture
async def gateway(lab: KannelLab, callbacks: Callbacks) -> AsyncIterator[KannelGateway]:
    """Build the production KannelGateway against the test Kannel, DLRs to the callback server."""
    gw = KannelGateway(
        lab.sendsms_url,
        lab.username,
        lab.password,
        SENDER,
        callbacks.url("/dlr"),
        timeout=TIMEOUT,
    )
    try:
        yield gw
    finally:
        await gw.close()


async def next_dlr(callbacks: Callbacks) -> tuple[str, int]:
    """Wait for the next DLR callback and parse it."""
    return parse_dlr(await asyncio.wait_for(callbacks.dlr.get(), TIMEOUT))


# ----------------------------------------------------------------------------------------------
# against the real gateway
# ----------------------------------------------------------------------------------------------


async def test_chinese_multipart_arrives_intact(gateway: KannelGateway, lab: KannelLab) -> None:
    """A composed Chinese multi-part SMS reaches the SMSC exactly, in segments() parts."""
    text = compose(
        signature="桃源县应急管理局",
        title="暴雨红色预警",
        body_markdown=ZH_BODY,
        link="https://example.cn/e/42",
        unsubscribe_hint="回TD退订",
        max_segments=3,
    )
    assert segments(text) > 1

    result = await gateway.send(to=PHONE, text=text, message_id="zh-1")

    assert result.outcome == "accepted", result
    message = await lab.smsc.next_mt_message(TIMEOUT)
    assert (message.sender, message.receiver, message.text) == (SENDER, PHONE, text)
    assert message.coding == "ucs2"
    assert message.parts == segments(text)
    assert lab.smsc.protocol_errors == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Alert: water level 3.5m [zone A] {B} ~5€", id="gsm7-extension"),
        pytest.param("A" * 100 + "€" * 40, id="gsm7-escape-pairs-not-split"),
        pytest.param("中" * 66 + "🔥" + "文" * 10, id="ucs2-surrogate-pair-at-part-edge"),
        pytest.param("火警🔥请撤离", id="ucs2-emoji-single"),
    ],
)
async def test_part_count_matches_segments(
    gateway: KannelGateway, lab: KannelLab, text: str
) -> None:
    """Kannel splits GSM-7 and UCS-2 texts into exactly segments() parts and loses nothing."""
    result = await gateway.send(to=PHONE, text=text, message_id="parts-1")

    assert result.outcome == "accepted", result
    message = await lab.smsc.next_mt_message(TIMEOUT)
    assert message.text == text
    assert message.parts == segments(text)


async def test_mo_subscribe_reaches_inbound_endpoint(lab: KannelLab, callbacks: Callbacks) -> None:
    """A Chinese MO from the fake handset reaches /sms/inbound as UTF-8 and parses as subscribe."""
    await lab.smsc.send_mo("+8613800000010", SENDER, "订阅 SZK")

    query = await asyncio.wait_for(callbacks.inbound.get(), TIMEOUT)

    assert query["text"] == "订阅 SZK"
    assert query["from"] == "+8613800000010"
    assert query["to"] == SENDER
    assert query["msgid"]
    assert parse(query["text"]) == Command("subscribe", "SZK")


async def test_dlr_arrives_and_parses(gateway: KannelGateway, callbacks: Callbacks) -> None:
    """An accepted SMS produces SMSC-accepted (8) and delivered (1) reports for our message id."""
    result = await gateway.send(to=PHONE, text="测试回执", message_id="msg-42")
    assert result.outcome == "accepted", result

    reports = {await next_dlr(callbacks), await next_dlr(callbacks)}

    assert reports == {("msg-42", 8), ("msg-42", 1)}


async def test_smsc_down_queues_then_delivers(gateway: KannelGateway, lab: KannelLab) -> None:
    """With the SMSC disconnected sendsms answers queued; the SMS arrives after reconnecting."""
    await lab.stop_smsc()

    result = await gateway.send(to=PHONE, text="排队测试：SMSC 离线", message_id="q-1")

    assert result.outcome == "queued", result
    assert "Queued" in result.detail
    assert lab.smsc.pending() == 0
    await lab.start_smsc()
    assert await lab.smsc.next_mt(TIMEOUT) == (SENDER, PHONE, "排队测试：SMSC 离线")


async def test_unroutable_number_fails(gateway: KannelGateway, callbacks: Callbacks) -> None:
    """A 999... number is refused as not routable (failed) and reported by a type 16 DLR."""
    result = await gateway.send(to="+99900000001", text="x", message_id="bad-1")

    assert result.outcome == "failed", result
    assert "Not routable" in result.detail
    assert await next_dlr(callbacks) == ("bad-1", 16)


async def test_gateway_down_is_retry_then_recovers(gateway: KannelGateway, lab: KannelLab) -> None:
    """With bearerbox and smsbox stopped the send is retry; after a restart it is accepted."""
    await lab.stop()

    down = await gateway.send(to=PHONE, text="hello", message_id="r-1")

    assert down.outcome == "retry", down
    await lab.restart()
    up = await gateway.send(to=PHONE, text="hello", message_id="r-2")
    assert up.outcome == "accepted", up
    assert await lab.smsc.next_mt(TIMEOUT) == (SENDER, PHONE, "hello")


# ----------------------------------------------------------------------------------------------
# against a scripted HTTP stub (no Kannel needed)
# ----------------------------------------------------------------------------------------------


@dataclass
class Stub:
    """Answer sendsms requests with a fixed status and body, recording each query."""

    server: TestServer
    status: int = 202
    body: str = "0: Accepted for delivery"
    hang: bool = False
    queries: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Return the stub's sendsms URL."""
        return str(self.server.make_url("/cgi-bin/sendsms"))


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    """Run a scripted sendsms endpoint on a free loopback port."""
    app = web.Application()
    state = Stub(TestServer(app, host="127.0.0.1", port=0))
    never = asyncio.Event()

    async def sendsms(request: web.Request) -> web.Response:
        state.queries.append(dict(request.query))
        if state.hang:
            await never.wait()
        return web.Response(status=state.status, text=state.body)

    app.router.add_get("/cgi-bin/sendsms", sendsms)
    await state.server.start_server()
    try:
        yield state
    finally:
        await state.server.close()


def stub_gateway(url: str, dlr_url: str | None = None, timeout: float = TIMEOUT) -> KannelGateway:
    """Build a KannelGateway with fixed test credentials."""
    return KannelGateway(url, "tester", "s3cret", SENDER, dlr_url, timeout=timeout)


def test_kannel_gateway_satisfies_protocol() -> None:
    """KannelGateway is structurally an SmsGateway."""
    assert isinstance(stub_gateway("http://127.0.0.1:1/cgi-bin/sendsms"), SmsGateway)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (202, "0: Accepted for delivery", "accepted"),
        (202, "3: Queued for later delivery", "queued"),
        (400, "Missing receiver number, rejected", "failed"),
        (403, "Not routable. Do not try again.", "failed"),
        (403, "Authorization failed for sendsms", "retry"),
        (429, "slow down", "retry"),
        (500, "boom", "retry"),
        (503, "unavailable", "retry"),
    ],
)
async def test_answer_mapping(stub: Stub, status: int, body: str, outcome: str) -> None:
    """Each sendsms answer maps to the documented outcome, with the body in the detail."""
    stub.status, stub.body = status, body
    gw = stub_gateway(stub.url)
    try:
        result = await gw.send(to=PHONE, text="hi", message_id="m-1")
    finally:
        await gw.close()
    assert result == SendResult(outcome, f"{status} {body}", None)  # type: ignore[arg-type]


async def test_request_parameters(stub: Stub) -> None:
    """UCS-2 text is sent with coding=2, GSM-7 with coding=0, and dlr-url carries our id."""
    gw = stub_gateway(stub.url, dlr_url="http://127.0.0.1:9/dlr?k=v")
    try:
        await gw.send(to=PHONE, text="紧急通知 a+b", message_id="id-1")
        await gw.send(to=PHONE, text="plain a+b", message_id="id-2")
    finally:
        await gw.close()
    zh, gsm = stub.queries
    assert zh["text"] == "紧急通知 a+b" and zh["to"] == PHONE and zh["from"] == SENDER
    assert (zh["charset"], zh["coding"], gsm["coding"]) == ("UTF-8", "2", "0")
    assert zh["username"] == "tester" and zh["password"] == "s3cret"
    assert zh["dlr-mask"] == "31"
    assert zh["dlr-url"] == "http://127.0.0.1:9/dlr?k=v&message_id=id-1&type=%d"


async def test_timeout_is_retry(stub: Stub) -> None:
    """A sendsms call that does not answer in time is retry, not failed."""
    stub.hang = True
    gw = stub_gateway(stub.url, timeout=TIMEOUT / 20)
    try:
        result = await gw.send(to=PHONE, text="hi", message_id="t-1")
    finally:
        await gw.close()
    assert result.outcome == "retry"
    assert "timeout" in result.detail


async def test_connection_refused_is_retry_without_password() -> None:
    """A refused connection is retry, and the detail never contains the password."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gw = stub_gateway(f"http://127.0.0.1:{port}/cgi-bin/sendsms")
    try:
        result = await gw.send(to=PHONE, text="hi", message_id="c-1")
    finally:
        await gw.close()
    assert result.outcome == "retry"
    assert "s3cret" not in result.detail


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "+86 138 0000 0001"}, "E.164"),
        ({"to": "8613800000001"}, "E.164"),
        ({"to": "+8613800000001,+8613800000002"}, "E.164"),
        ({"text": "bad \ud83d surrogate"}, "lone surrogate"),
        ({"text": ""}, "empty"),
        ({"message_id": "has space"}, "message_id"),
        ({"message_id": "%d"}, "message_id"),
    ],
)
async def test_send_rejects_bad_input(stub: Stub, kwargs: dict[str, str], message: str) -> None:
    """Bad recipients, invalid Unicode and unsafe message ids raise before any request."""
    args = {"to": PHONE, "text": "hi", "message_id": "ok-1"} | kwargs
    gw = stub_gateway(stub.url)
    try:
        with pytest.raises(ValueError, match=message):
            await gw.send(**args)
    finally:
        await gw.close()
    assert stub.queries == []


def test_dlr_url_with_percent_is_rejected() -> None:
    """A dlr_url containing '%' is refused, since Kannel would rewrite its escapes."""
    with pytest.raises(ValueError, match="%"):
        stub_gateway("http://127.0.0.1:1/", dlr_url="http://h/dlr?x=%C3%A9")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"message_id": "msg-42", "type": "1"}, ("msg-42", 1)),
        ({"message_id": "a.b~c_d", "type": "16", "extra": "x"}, ("a.b~c_d", 16)),
    ],
)
def test_parse_dlr(query: dict[str, str], expected: tuple[str, int]) -> None:
    """Well-formed DLR queries yield our message id and the DLR type."""
    assert parse_dlr(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"type": "1"},
        {"message_id": "m"},
        {"message_id": "", "type": "1"},
        {"message_id": "m", "type": "%d"},
        {"message_id": "m", "type": "3"},
        {"message_id": "m", "type": "-1"},
        {"message_id": "m", "type": "１"},
        {"message_id": "m i", "type": "1"},
    ],
)
def test_parse_dlr_rejects_garbage(query: dict[str, str]) -> None:
    """Missing, unexpanded or unknown fields raise ValueError."""
    with pytest.raises(ValueError):
        parse_dlr(query)
