"""Child process of the kill test: ingest a tree, announcing progress on stdout."""

from __future__ import annotations

import sys

from desilab.store import connect


def main(url: str, tree: str) -> None:
    with connect(url) as store:
        print("ready", flush=True)

        def on_file(outcome) -> None:
            print(f"done {outcome.status} {outcome.path}", flush=True)

        store.ingest([tree], workers=1, on_file=on_file)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
