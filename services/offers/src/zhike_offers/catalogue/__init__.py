"""The default offer catalogue: one YAML file per offer in this folder, named `<offer_id>.yaml`.

`load_catalogue(environment)` reads them (or every `*.yaml`, `*.yml` and `*.json` file of another
directory, which then replaces the defaults: a bank's catalogue is its own) and compiles them
before the service starts: a bad file stops it with every problem named (file, offer, field,
and for a rule the line and column in the clause). The document format is
`zhike_offers.domain.catalogue`'s; the README's "Offer catalogue" section describes each field.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from zhike_offers.domain.catalogue import (
    Catalogue,
    CatalogueError,
    OfferProblem,
    compile_catalogue,
)
from zhike_offers.domain.eligibility import RuleEnvironment

DEFAULT_DIRECTORY = Path(__file__).resolve().parent
SUFFIXES = (".yaml", ".yml", ".json")


def catalogue_files(directory: Path | None = None) -> list[Path]:
    folder = DEFAULT_DIRECTORY if directory is None else directory
    return sorted(path for path in folder.iterdir() if path.suffix in SUFFIXES and path.is_file())


def load_catalogue(environment: RuleEnvironment, directory: Path | None = None) -> Catalogue:
    if directory is not None and not directory.is_dir():
        raise CatalogueError([OfferProblem(str(directory), "", "(directory)", "not a directory")])
    documents: dict[str, object] = {}
    problems: list[OfferProblem] = []
    for path in catalogue_files(directory):
        try:
            # JSON is YAML too; safe_load builds plain values only, never objects.
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            problems.append(OfferProblem(str(path), "", "(file)", str(error)))
            continue
        offer_id = document.get("offer_id") if isinstance(document, dict) else None
        if isinstance(offer_id, str) and offer_id != path.stem:
            problems.append(
                OfferProblem(str(path), offer_id, "offer_id", f"the file must be {offer_id}.yaml")
            )
        documents[str(path)] = document
    try:
        catalogue = compile_catalogue(documents, environment)
    except CatalogueError as error:
        raise CatalogueError([*problems, *error.problems]) from None
    if problems:
        raise CatalogueError(problems)
    return catalogue
