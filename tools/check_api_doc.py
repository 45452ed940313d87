"""Checks docs/api.md against include/flamingo.h: every function the header declares is
named in the doc, and the doc names no function the header lacks. Prints one line; exit 1 on
a mismatch."""
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
header = re.sub(r"/\*.*?\*/", "", (root / "include" / "flamingo.h").read_text(), flags=re.S)
doc = (root / "docs" / "api.md").read_text()
declared = set(re.findall(r"\b(flamingo_[a-z_]+)\s*\(", header))
declared -= {"flamingo_log_callback", "flamingo_token_callback"}  # typedef'd function pointers
types = set(re.findall(r"\b(flamingo_[a-z_]+)\s*;", header)) | set(re.findall(r"typedef\s+struct\s+(flamingo_[a-z_]+)", header))
named = set(re.findall(r"`(flamingo_[a-z_]+)`", doc)) - types
missing, unknown = sorted(declared - named), sorted(named - declared)
if missing or unknown:
    print(f"docs/api.md: missing {missing}, not in the header {unknown}")
    sys.exit(1)
print(f"docs/api.md lists all {len(declared)} functions of include/flamingo.h")
