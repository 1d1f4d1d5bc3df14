"""Build the real-speech sets (Debian's asterisk-core-sounds prompts) into the cache and print what they hold.

Downloads each language's transcript and 16 kHz audio packages once with apt-get, then writes
{language}_{train,test}.json manifests that whisper-lora's train, evaluate and check-data read.

    whisper_lora_env/bin/python benchmarks/realspeech.py [--languages en,es,fr,it] [--out DIR]
"""

from __future__ import annotations

import argparse

from whisper_lora.data.realspeech import LANGUAGES, default_root, prompts, write_manifests


def main() -> None:
    """Fetch, write the manifests and print prompts, multi-sentence prompts and hours per language and split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default=",".join(LANGUAGES), help="comma list of en, es, fr, it")
    parser.add_argument("--out", default=None, help=f"manifest folder (default: {default_root() / 'manifests'})")
    args = parser.parse_args()
    languages = tuple(args.languages.split(","))
    written = write_manifests(languages, args.out)
    print(f"{'set':<10} {'prompts':>7} {'multi':>6} {'minutes':>8}  manifest")
    for language in languages:
        found = prompts(language)
        for split in ("train", "test"):
            chosen = [p for p in found if p.split == split]
            multi = sum(p.sentences > 1 for p in chosen)
            minutes = sum(p.seconds for p in chosen) / 60
            print(
                f"{language}_{split:<7} {len(chosen):>7} {multi:>6} {minutes:>8.1f}  {written[f'{language}_{split}']}"
            )


if __name__ == "__main__":
    main()
