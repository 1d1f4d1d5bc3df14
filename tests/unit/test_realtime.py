"""The /v1/realtime WebSocket on a scripted model: OpenAI's event shapes, turns, limits and refusals."""

import base64

import numpy as np
import pytest

from helpers import ScriptedModel, clock_audio, script

pytest.importorskip("fastapi", reason="the server extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from whisper_lora.audio.encode import pcm16  # noqa: E402
from whisper_lora.infer.stream import join_words  # noqa: E402
from whisper_lora.serve.app import ServeSettings, create_app  # noqa: E402

PCM16 = {"input_audio_format": "pcm16", "input_audio_sample_rate": 16000, "turn_detection": None}


def client_for(model=None, **settings):
    return TestClient(create_app(ServeSettings(**settings), model or ScriptedModel(script(30.0))))


def pcm(samples: np.ndarray) -> str:
    return base64.b64encode(pcm16(samples).tobytes()).decode()


def send_audio(ws, seconds: float, piece: float = 0.5) -> None:
    audio = clock_audio(seconds)
    step = int(piece * 16000)
    for first in range(0, len(audio), step):
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(audio[first : first + step])})


def until(ws, kind: str) -> list[dict]:
    """Events up to and including the first of the given type."""
    seen = []
    while not seen or seen[-1]["type"] != kind:
        seen.append(ws.receive_json())
    return seen


def test_a_turn_streams_committed_deltas_then_the_completed_transcript():
    words = script(30.0)
    with client_for(ScriptedModel(words)) as client, client.websocket_connect("/v1/realtime") as ws:
        created = ws.receive_json()
        assert created["type"] == "session.created" and created["session"]["input_audio_sample_rate"] == 24000
        ws.send_json({"type": "session.update", "session": {**PCM16, "input_audio_transcription": {"language": "en"}}})
        updated = ws.receive_json()
        assert updated["type"] == "session.updated" and updated["session"]["turn_detection"] is None
        assert updated["session"]["input_audio_transcription"]["language"] == "en"
        send_audio(ws, 11.2)  # in the pause after the third sentence
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = until(ws, "conversation.item.input_audio_transcription.completed")
    deltas = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    heard = join_words(w for w in words if w.end <= 11.2)
    assert len(deltas) > 2 and "".join(d["delta"] for d in deltas) == heard  # committed piece by piece, never redone
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    completed = events[-1]
    assert committed[0]["item_id"] == completed["item_id"] == deltas[0]["item_id"] and completed["transcript"] == heard
    assert all(e["event_id"].startswith("event_") for e in events)


def test_the_next_turn_gets_a_new_item_that_names_the_previous_one():
    with client_for() as client, client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": PCM16})
        ws.receive_json()
        send_audio(ws, 3.0)
        ws.send_json({"type": "input_audio_buffer.commit"})
        first = until(ws, "conversation.item.input_audio_transcription.completed")[-1]
        send_audio(ws, 3.0)
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = until(ws, "conversation.item.input_audio_transcription.completed")
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"][0]
    assert committed["previous_item_id"] == first["item_id"] != committed["item_id"]


@pytest.mark.parametrize(
    "message, words",
    [
        ("not json", "not JSON"),
        ({"type": "response.create"}, "unknown event type 'response.create'"),
        ({"type": "input_audio_buffer.append", "audio": "@@@"}, "not valid base64"),
        ({"type": "input_audio_buffer.commit"}, "the input audio buffer is empty"),
        ({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}, "send pcm16"),
        (
            {"type": "session.update", "session": {"input_audio_format": "pcm16", "input_audio_sample_rate": 8000}},
            "16000 or 24000",
        ),
        (
            {"type": "session.update", "session": {"input_audio_transcription": {"language": "xx"}}},
            "not a Whisper language",
        ),
        ({"type": "session.update", "session": {"input_audio_transcription": {"language": 5}}}, "must be a string"),
        ({"type": "session.update", "session": {"input_audio_transcription": "x"}}, "must be an object"),
        ({"type": "session.update", "session": {"audio": {"input": "x"}}}, "session.audio.input must be an object"),
        ({"type": "session.update", "session": {"audio": {"input": {"format": "pcm"}}}}, "format must be an object"),
        (
            {"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": "x"}}},
            "silence_duration_ms must be a number",
        ),
        ({"type": "session.update", "session": {"turn_detection": {"threshold": None}}}, "threshold must be a number"),
        (
            {"type": "session.update", "session": {"input_audio_sample_rate": True, "input_audio_format": "pcm16"}},
            "16000",
        ),
    ],
)
def test_bad_events_get_an_error_event_and_the_session_goes_on(message, words):
    with client_for() as client, client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_text(message) if isinstance(message, str) else ws.send_json(message)
        error = ws.receive_json()
        assert error["type"] == "error" and words in error["error"]["message"], error
        ws.send_json({"type": "session.update", "session": PCM16})
        assert ws.receive_json()["type"] == "session.updated"


def test_sessions_past_max_streams_are_refused_with_a_reason():
    with client_for(max_streams=1) as client, client.websocket_connect("/v1/realtime") as first:
        assert first.receive_json()["type"] == "session.created"
        with client.websocket_connect("/v1/realtime") as second:
            refusal = second.receive_json()
            assert refusal["type"] == "error" and "1 live sessions at once" in refusal["error"]["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 1013
    with client_for(max_streams=1) as client:  # a closed session frees its place
        for _ in range(2):
            with client.websocket_connect("/v1/realtime") as ws:
                assert ws.receive_json()["type"] == "session.created"


def test_the_api_key_comes_from_the_header_or_the_browser_subprotocol():
    with client_for(api_key="k") as client:
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/v1/realtime") as ws:
            ws.receive_json()
        with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer k"}) as ws:
            assert ws.receive_json()["type"] == "session.created"
        with client.websocket_connect("/v1/realtime", subprotocols=["realtime", "openai-insecure-api-key.k"]) as ws:
            assert ws.accepted_subprotocol == "realtime" and ws.receive_json()["type"] == "session.created"
        with client.websocket_connect("/v1/realtime", subprotocols=["openai-insecure-api-key.k"]) as ws:
            assert ws.accepted_subprotocol is None  # the key is never sent back in the handshake


def test_audio_over_the_message_and_minute_limits_is_refused(monkeypatch):
    from whisper_lora.serve import realtime

    monkeypatch.setattr(realtime, "MINUTE_AUDIO_SECONDS", 4.0)  # 240 s in use: 4x real time
    limit_mb = 64000 / 2**20  # 2 s of 16 kHz PCM16
    with client_for(max_upload_mb=limit_mb) as client, client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": PCM16})
        ws.receive_json()
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(clock_audio(3.0))})
        assert "over the" in until(ws, "error")[-1]["error"]["message"]
        for _ in range(5):
            ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(clock_audio(0.9))})
        error = until(ws, "error")[-1]["error"]
        assert error["code"] == "rate_limit_exceeded" and "more than 4 s of audio in a minute" in error["message"]
        with pytest.raises(WebSocketDisconnect):
            until(ws, "never")


def test_24_khz_audio_is_resampled_to_the_models_16_khz():
    from whisper_lora.serve.realtime import PCMDecoder

    decode = PCMDecoder(24000)
    tone = np.sin(2 * np.pi * 440 * np.arange(24000) / 24000).astype(np.float32)
    pieces = [decode(base64.b64decode(pcm(tone[i : i + 2400]))) for i in range(0, 24000, 2400)]
    out = np.concatenate(pieces)
    assert abs(len(out) - 16000) < 400  # the resampler holds back a few ms until more comes
    spectrum = np.abs(np.fft.rfft(out[:8000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 4


def test_a_turn_ends_halfway_into_the_first_pause_long_enough():
    from whisper_lora.serve.realtime import turn_cut

    ms = 16  # samples per millisecond
    spans = [(100 * ms, 900 * ms), (1200 * ms, 2000 * ms), (3000 * ms, 3500 * ms)]
    assert turn_cut(spans, 4000 * ms, silence_ms=600) == 2000 * ms + 300 * ms  # 300 ms pause too short, 1 s one ends it
    assert turn_cut(spans[:2], 2400 * ms, silence_ms=600) is None  # still only 400 ms quiet at the end
    assert turn_cut(spans[:2], 2700 * ms, silence_ms=600) == 2300 * ms
    assert turn_cut([], 4000 * ms, silence_ms=600) is None


def test_cleared_audio_and_its_words_never_reach_the_completed_transcript():
    words = script(30.0)
    with client_for(ScriptedModel(words)) as client, client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": PCM16})
        ws.receive_json()
        send_audio(ws, 6.0)
        until(ws, "conversation.item.input_audio_transcription.delta")  # words of the first audio were committed
        ws.send_json({"type": "input_audio_buffer.clear"})
        until(ws, "input_audio_buffer.cleared")
        later = clock_audio(22.3)[20 * 16000 :]  # audio from 20 s to the pause after the sixth sentence
        for first in range(0, len(later), 8000):
            ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(later[first : first + 8000])})
        ws.send_json({"type": "input_audio_buffer.commit"})
        completed = until(ws, "conversation.item.input_audio_transcription.completed")[-1]
    assert completed["transcript"] == join_words(w for w in words if w.start >= 20 and w.end <= 22.3)


def test_a_page_from_another_origin_cannot_open_the_socket_without_a_key():
    def opening(origin: str, **settings) -> str:
        """'open', or the reason the server closed the socket."""
        with client_for(**settings) as client:
            try:
                with client.websocket_connect("/v1/realtime", headers={"Origin": origin}) as ws:
                    assert ws.receive_json()["type"] == "session.created"
                    return "open"
            except WebSocketDisconnect as closed:
                assert closed.code == 1008
                return closed.reason

    assert opening("http://testserver") == "open"  # the server's own page
    assert "refused (serve --allowed_origins https://elsewhere.example" in opening("https://elsewhere.example")
    assert opening("https://elsewhere.example", allowed_origins=("https://elsewhere.example",)) == "open"
    assert opening("https://elsewhere.example", api_key="k") == "missing or wrong API key"  # the key guards it
