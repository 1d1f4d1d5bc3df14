"""The vendor's transcript lines are split into one entry per prompt, also where a line runs several together."""

from whisper_lora.data.realspeech import transcript_entries


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
