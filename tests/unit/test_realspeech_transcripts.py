"""The vendor's transcripts: one entry per prompt, also where a line runs several together; unspoken notes left out."""

import wave

import numpy as np

from whisper_lora.data.realspeech import _prompt, transcript_entries


def test_entries_run_together_on_one_line_are_split_at_names_that_have_audio(tmp_path):
    for name in ("vm-tempremoved", "vm-then-pound", "confbridge-mute-in"):
        (tmp_path / f"{name}.g722").touch()
    line = "vm-tempremoved: Il saluto è stato eliminato vm-then-pound: poi premere cancelletto\n"
    assert transcript_entries(line, tmp_path) == [
        "vm-tempremoved: Il saluto è stato eliminato",
        "vm-then-pound: poi premere cancelletto",
    ]
    inside = "confbridge-mute-in: Nota: premere uno. senza-audio: resta nel testo"
    assert transcript_entries(inside, tmp_path) == [inside]  # neither "Nota" nor "senza-audio" has a recording


def test_notes_the_speaker_does_not_say_leave_the_prompt_out(tmp_path):
    with wave.open(str(tmp_path / "confbridge-muted.g722"), "wb") as audio:  # PyAV reads it by its content
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16000)
        audio.writeframes(np.zeros(16000, np.int16).tobytes())
    kept = _prompt("confbridge-muted: Voce ora disattivata.", tmp_path, "it")
    assert kept is not None and kept.text == "Voce ora disattivata." and kept.seconds == 1.0
    for note in ("Voce disattivata. (You are now muted.)", "millenovecento... (data)", "[beep] Voce disattivata."):
        assert _prompt(f"confbridge-muted: {note}", tmp_path, "it") is None, note
