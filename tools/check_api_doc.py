"""Checks docs/api.md against include/flamingo.h: every function the header declares is
named in the doc, and the doc names no function the header lacks. Prints one line; exit 1 on
a mismatch."""
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
header = (root / "include" / "flamingo.h").read_text()
doc = (root / "docs" / "api.md").read_text()
declared = set(re.findall(r"\b(flamingo_[a-z_]+)\s*\(", re.sub(r"/\*.*?\*/", "", header, flags=re.S)))
declared -= {"flamingo_log_callback", "flamingo_token_callback"}  # typedef'd function pointers
named = set(re.findall(r"`(flamingo_[a-z_]+)`", doc))
missing, unknown = sorted(declared - named), sorted(named - declared)
if missing or unknown:
    print(f"docs/api.md: missing {missing}, not in the header {unknown}")
    sys.exit(1)
print(f"docs/api.md lists all {len(declared)} functions of include/flamingo.h")
