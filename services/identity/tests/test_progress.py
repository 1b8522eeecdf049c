"""resolve-csv's progress bars: drawn on a terminal when asked, never into a file or a pipe."""

from __future__ import annotations

import io
from pathlib import Path

from zhike_identity.batch import resolve_file
from zhike_identity.progress import StageProgress

HEADER = "source,source_id,full_name,id_type,id_number,phone,email,birth_date,gender,address\n"


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is in an interactive shell."""

    def isatty(self) -> bool:
        return True


def drawn(stream: io.StringIO, *, enabled: bool) -> str:
    with StageProgress(stream, enabled=enabled) as progress:
        progress("blocking", 0, 200)
        progress("blocking", 200, 200)
        progress("comparing", 50, 100)
    return stream.getvalue()


def test_a_terminal_gets_a_bar_per_stage_with_its_count() -> None:
    output = drawn(Terminal(), enabled=True)

    assert "blocking" in output
    assert "200/200" in output
    assert "comparing" in output
    assert "50/100" in output


def test_no_progress_draws_nothing_even_on_a_terminal() -> None:
    assert drawn(Terminal(), enabled=False) == ""


def test_a_stream_that_is_no_terminal_gets_nothing() -> None:
    assert drawn(io.StringIO(), enabled=True) == ""


def test_resolve_file_reports_only_problems_when_its_errors_go_to_a_file(tmp_path: Path) -> None:
    source = tmp_path / "records.csv"
    source.write_text(
        HEADER
        + "crm,1,王小明,,,13912345678,,1980-01-02,M,\n"
        + "loans,7,王小明,,,13912345678,,1980-01-02,M,\n"
        + "crm,2,李四,,,12012345678,,,,\n",
        encoding="utf-8",
    )
    errors = io.StringIO()

    resolve_file(source, tmp_path / "parties.csv", progress=True, errors=errors)

    assert errors.getvalue() == f"{source}:4: phone: unallocated\n"
