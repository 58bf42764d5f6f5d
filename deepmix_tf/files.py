"""Writing results so that a reader never sees half of them: a staging folder or file beside
the target, renamed into place once complete."""

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def staged_directory(final, replace=True):
    """Yields an empty folder beside `final`. When the block ends without error the folder
    becomes `final`; an older `final` is replaced only then (or, with `replace=False`,
    FileExistsError is raised before any work). On error the folder is removed and `final`
    is left as it was."""
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    if not replace and os.path.exists(final):
        raise FileExistsError(f"{final} exists; not overwritten")
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(final)}.tmp-")
    try:
        yield staging
        if os.path.exists(final):
            old = staging + ".old"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(path, mode="w"):
    """Yields a file object beside `path`; it becomes `path` when the block ends without
    error, else it is removed and `path` is left as it was."""
    with tempfile.NamedTemporaryFile(mode, dir=os.path.dirname(os.path.abspath(path)),
                                     delete=False, suffix=".tmp") as f:
        try:
            yield f
        except BaseException:
            f.close()
            os.remove(f.name)
            raise
    os.replace(f.name, path)


def write_json(path, value):
    """Writes JSON through a temporary file and a rename."""
    with staged_file(path) as f:
        json.dump(value, f, indent=1)


def write_text(path, text):
    """Writes text through a temporary file and a rename."""
    with staged_file(path) as f:
        f.write(text)
