"""Allow `python -m healer`."""

from __future__ import annotations

from healer.entry import main

if __name__ == "__main__":
    main()
