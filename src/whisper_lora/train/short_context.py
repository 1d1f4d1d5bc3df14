"""The short-context objective: a LoRA adapter taught to read short encoder windows as its model reads 30 s ones.

The student is the model with the adapter on, encoding each window's audio and a random margin of 0 to 64
positions; the teacher is the same model with the adapter off, encoding the whole padded 30 s window. The loss is
the mean squared difference of every decoder layer's hidden states on the transcript's tokens, as in FUTO's
whisper-acft (which fine-tunes every weight instead of an adapter). In a share of the steps the student reads the
whole window too, which holds the adapted model's 30 s reading to the model's own.
"""

from __future__ import annotations

import torch

from whisper_lora.core.budget import ENCODER_POSITIONS, SHORT_WINDOW_MARGIN, short_window_positions
from whisper_lora.train.dataset import IGNORE_INDEX, encoder_stem, encoder_top

OBJECTIVES = ("transcribe", "short_context")
WHOLE_WINDOW_SHARE = 0.25  # steps whose student reads the whole 30 s window


def short_encoder(encoder, features: torch.Tensor, positions: int) -> torch.Tensor:
    """The encoder's output over the first `positions` positions of padded 30 s features (2 mel frames each)."""
    return encoder_top(encoder, encoder_stem(encoder, features[..., : 2 * positions], 0), 0)


def decoder_states(whisper, encoded: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Every decoder layer's hidden states (the embeddings first), stacked: (layers + 1, batch, tokens, width)."""
    output = whisper.decoder(input_ids=tokens, encoder_hidden_states=encoded, output_hidden_states=True)
    return torch.stack(output.hidden_states)


def window_positions(audio_samples: torch.Tensor, margin: int) -> int:
    """Encoder positions that hold the batch's longest audio and a margin, at most the whole window."""
    return short_window_positions(int(audio_samples.max()), margin) or ENCODER_POSITIONS


def draw_positions(audio_samples: torch.Tensor) -> int:
    """The student's window for a step: the whole one in WHOLE_WINDOW_SHARE of steps, else the audio and 0-64 more."""
    if float(torch.rand(())) < WHOLE_WINDOW_SHARE:
        return ENCODER_POSITIONS
    return window_positions(audio_samples, int(torch.randint(0, SHORT_WINDOW_MARGIN + 1, ())))


def distillation_loss(peft_model, inputs: dict[str, torch.Tensor], positions: int) -> torch.Tensor:
    """MSE between the decoder's hidden states on `positions` (adapter on) and on the whole window (adapter off)."""
    whisper = peft_model.get_base_model().model
    features, tokens = inputs["input_features"], inputs["decoder_input_ids"]
    with torch.no_grad(), peft_model.disable_adapter():
        teacher = decoder_states(whisper, whisper.encoder(features).last_hidden_state, tokens)
    student = decoder_states(whisper, short_encoder(whisper.encoder, features, positions), tokens)
    mask = (inputs["labels"] != IGNORE_INDEX)[None, :, :, None].to(student.dtype)
    return ((student - teacher.to(student.dtype)) ** 2 * mask).sum() / (mask.sum() * student.shape[-1])
