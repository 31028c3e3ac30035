"""Where the tests find the CORNN benchmark data (GPL-3.0: read in place, never copied into the repository)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# $SWAT_EDGE_CORNN, else ../shared/cornn beside the checkout (the layout the project documents), else this
# workplace's shared folder, which a clone made elsewhere (a CI checkout) still sees.
CANDIDATES = tuple(Path(p) for p in (os.environ.get("SWAT_EDGE_CORNN"), REPO.parent / "shared" / "cornn",
                                     "/work/shared/cornn") if p)
CORNN_DIR = next((p for p in CANDIDATES if (p / "manifest.csv").exists()), CANDIDATES[0])
SKIP_REASON = f"CORNN data not found (looked in {', '.join(map(str, CANDIDATES))})"
HAVE_CORNN = (CORNN_DIR / "manifest.csv").exists()
