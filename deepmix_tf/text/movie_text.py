"""The text of a movie node, from a movie table (a spec's `text` names the fields)."""

# Every field a movie text may use, in the order they are written.
TEXT_FIELDS = ("title", "year", "genres", "director", "cast", "runtime", "languages",
               "certificate", "plot")


def movie_text(movie, fields=TEXT_FIELDS):
    """One movie as a sentence-like text, e.g.
    "Toy Story (1995). Animation, Children's, Comedy. Directed by John Lasseter. Starring
    Tom Hanks, Tim Allen. 81 minutes. Language: English. Rated G. A cowboy doll ..."

    Args:
        movie: mapping with the movie table's columns (`title`, `year`, `genres`, ...);
            missing or empty values are left out.
        fields: the fields to use (see `TEXT_FIELDS`).
    """
    unknown = set(fields) - set(TEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown text fields {sorted(unknown)}; known: {TEXT_FIELDS}")

    def value(name):
        v = movie.get(name, "") if name in fields else ""
        return "" if v is None or str(v) in ("", "0", "nan") else str(v).strip()

    title, year = value("title"), value("year")
    parts = [f"{title} ({year})" if title and year else title or year]
    templates = {"genres": lambda v: ", ".join(v.split("|")), "director": "Directed by {}",
                 "cast": "Starring {}", "runtime": "{}", "languages": "Language: {}",
                 "certificate": "Rated {}", "plot": "{}"}
    for name, template in templates.items():
        v = value(name)
        if v:
            parts.append(template(v) if callable(template) else template.format(v))
    return ". ".join(p.rstrip(".") for p in parts if p) + "."


def movie_texts(movies, fields=TEXT_FIELDS):
    """Texts of the rows of a movie DataFrame, in row order."""
    return [movie_text(row, fields) for row in movies.to_dict("records")]
