"""The kind-specific sections of a report page, by job kind (the shell renders the shared parts)."""

from collections.abc import Callable
from typing import Any

from worker.engine.reports.defense import render_defense_sections
from worker.engine.reports.evasion import render_evasion_sections
from worker.engine.reports.extraction import render_extraction_sections
from worker.engine.reports.poisoning import render_poisoning_sections

SectionRenderer = Callable[[dict[str, Any]], str]

SECTIONS: dict[str, SectionRenderer] = {
    "evasion": render_evasion_sections,
    "extraction": render_extraction_sections,
    "poisoning": render_poisoning_sections,
    "defense": render_defense_sections,
}
