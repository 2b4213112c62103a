"""`open` and `save` for local structure and image files, by file suffix.

The application builds these commands from the open/save command managers,
which are filled from each bundle's metadata (formats, providers, options).
The wheel ships no bundle metadata, so those managers would have to be fed
every format by hand through private bundle-info objects. Instead these two
small commands dispatch by suffix straight to ChimeraX's own readers and
writers (chimerax.pdb, chimerax.mmcif, chimerax.image_formats) — the same
functions the managers call. Anything else fails with ChimeraX's UserError.
"""
import os

from chimerax.core.commands import (CmdDesc, EnumOf, IntArg, ModelsArg,
                                    OpenFileNameArg, SaveFileNameArg, register)
from chimerax.core.errors import UserError

STRUCTURE_READERS = {".pdb": "pdb", ".ent": "pdb", ".pdb1": "pdb", ".cif": "mmcif", ".mmcif": "mmcif"}
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF",
                 ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM"}
STRUCTURE_WRITERS = {".pdb": "pdb", ".cif": "mmcif"}
FORMAT_NAMES = {"pdb": ".pdb", "mmcif": ".cif", "png": ".png", "jpeg": ".jpg", "tiff": ".tif"}


def _suffix(path, format_name):
    if format_name:
        return FORMAT_NAMES[format_name]
    return os.path.splitext(path)[1].lower()


def open_file(session, path, format=None):
    suffix = _suffix(path, format)
    reader = STRUCTURE_READERS.get(suffix)
    if reader is None:
        if not os.path.splitext(path)[1] and format is None:
            raise UserError("Fetching %r from a database is not available in this runtime" % path)
        raise UserError("Unrecognized file suffix %r: this runtime opens %s"
                        % (suffix, ", ".join(sorted(STRUCTURE_READERS))))
    if not os.path.isfile(path):
        raise UserError("No such file/path: %s" % path)
    name = os.path.basename(path)
    if reader == "pdb":
        from chimerax.pdb import open_pdb
        models, status = open_pdb(session, path, file_name=name)
    else:
        from chimerax.mmcif import open_mmcif
        models, status = open_mmcif(session, path, file_name=name)
    session.models.add(models)
    if status:
        session.logger.info(status)
    # The application's open command reports what it opened; the readers
    # alone do not, so say it here in the same spirit.
    atoms = sum(m.num_atoms for m in models)
    bonds = sum(m.num_bonds for m in models)
    session.logger.info("Opened %s containing %d model%s, %d atoms, %d bonds"
                        % (name, len(models), "" if len(models) == 1 else "s", atoms, bonds))
    return models


def save_file(session, path, format=None, width=None, height=None, supersample=3, models=None):
    suffix = _suffix(path, format)
    if suffix in IMAGE_FORMATS:
        if not session.ui.has_graphics:
            raise UserError("Unable to save images because offscreen rendering is not available")
        from chimerax.image_formats.save import save_image
        save_image(session, path, IMAGE_FORMATS[suffix], width=width, height=height,
                   supersample=supersample)
    elif suffix in STRUCTURE_WRITERS:
        if STRUCTURE_WRITERS[suffix] == "pdb":
            from chimerax.pdb import save_pdb
            save_pdb(session, path, models=models)
        else:
            from chimerax.mmcif.mmcif_write import write_mmcif
            write_mmcif(session, path, models=models)
    else:
        raise UserError("Unrecognized file suffix %r: this runtime saves %s"
                        % (suffix, ", ".join(sorted(set(IMAGE_FORMATS) | set(STRUCTURE_WRITERS)))))
    session.logger.info("Saved %s" % os.path.basename(path))


def register_commands(logger):
    formats = EnumOf(sorted(FORMAT_NAMES))
    register("open", CmdDesc(required=[("path", OpenFileNameArg)],
                             keyword=[("format", formats)],
                             synopsis="open a local structure file"),
             open_file, logger=logger)
    register("save", CmdDesc(required=[("path", SaveFileNameArg)],
                             keyword=[("format", formats), ("width", IntArg), ("height", IntArg),
                                      ("supersample", IntArg), ("models", ModelsArg)],
                             synopsis="save an image or structure file"),
             save_file, logger=logger)
