"""`desilab fetch`: download DR1 files (resume, sha256 check) or cut selected targets."""

from __future__ import annotations

from pathlib import Path

import typer

from desilab.errors import InputError
from desilab.io.fetch import (
    PRODUCTS,
    DownloadResult,
    HttpClient,
    RemoteFile,
    Selection,
    download,
    file_url,
    format_bytes,
    parse_int_list,
    plan,
    probe_sizes,
)
from desilab.io.remote_fits import ExtractResult, extract_targets, output_name
from desilab.ui import console, progress_bar

__all__ = ["register"]

HELP = f"""Download DR1 files into a local mirror of the public tree, or cut selected targets.

PRODUCT is one or more of {", ".join(PRODUCTS)}. Paths are those
of the release root (--base-url, default https://data.desi.lbl.gov/public/dr1),
kept as they are under --dest:

  zcatalog     spectro/redux/iron/zcatalog/v1/zpix-SURVEY-PROGRAM.fits
               (--survey all: zall-pix-iron.fits)

  coadd        spectro/redux/iron/healpix/SURVEY/PROGRAM/HPX//100/HPX/
  redrock      coadd-SURVEY-PROGRAM-HPX.fits, redrock-SURVEY-PROGRAM-HPX.fits
               (need --healpix: nside=64 NESTED, the zcatalog HEALPIX column)

  fastspecfit  vac/dr1/fastspecfit/iron/v3.0/catalogs/fastspec-iron-*.fits
               (--version v2.1: older data model); v3.0 main bright/dark are
               12 nside=1 files, --healpix keeps those holding the pixels

  desivast     vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_*.fits (8 files)

  qso          survey/catalogs/dr1/QSO/iron/QSO_cat_iron_cumulative_v0.fits

Each file is checked against the sha256sum file published in its directory and gets its
final name only then; an interrupted download resumes from NAME.part on the next run;
files already present and verified are skipped, so reruns are cheap.

With --targets, coadd/redrock files are not downloaded: only those targets' bytes are read
with HTTP range requests and written to NAME-targets-HASH.fits in the mirror directory
(a cut has no published checksum). The bytes fetched are printed.

[bold]Examples[/]

  desilab fetch zcatalog --survey main --program bright --dry-run    (sizes only)

  desilab fetch coadd redrock --healpix 10016,10017 --jobs 4

  desilab fetch coadd --healpix 10016 --targets 39627835576420141,39627835576420236

  desilab fetch coadd --healpix-file pixels.txt --targets-file targetids.txt

  desilab fetch fastspecfit --healpix 10016    (v3.0, only the nside=1 file holding it)

  desilab fetch desivast --dest /data/desi
"""

#: library parameter names -> the CLI spelling shown to the user
_OPTION = {"survey": "--survey", "program": "--program", "healpix": "--healpix", "version": "--version"}


def _ints(text: str | None, file: Path | None, *, option: str, file_option: str) -> list[int]:
    if text is not None and file is not None:
        raise InputError(f"give {option} or {file_option}, not both", parameter=option)
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=file, parameter=file_option) from exc
        values = parse_int_list(text, parameter=file_option)
        if not values:
            raise InputError("file lists no integers", file=file, parameter=file_option)
        return values
    if text is None:
        return []
    values = parse_int_list(text, parameter=option)
    if not values:
        raise InputError("no values given", parameter=option)
    return values


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise InputError(f"not an http(s) URL: {url!r}", parameter="--base-url")
    return url.rstrip("/")


def _line(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def _print_downloads(results: list[DownloadResult]) -> None:
    for r in results:
        _line(f"{r.status:<10} {format_bytes(r.size):>9}  {r.path}")
    got = sum(r.bytes_transferred for r in results)
    n_new = sum(r.status != "skipped" for r in results)
    n_skip = len(results) - n_new
    verified = all(r.sha256 is not None for r in results)
    note = "sha256 verified" if verified else "not verified (--no-verify)"
    console.print(
        f"{len(results)} file(s): {n_new} downloaded, {n_skip} already present; "
        f"{format_bytes(got)} transferred; {note}",
        soft_wrap=True,
        highlight=False,
    )


def _print_dry_run(sizes: list[tuple[RemoteFile, int | None]], dest: Path, targets: bool) -> None:
    for rf, size in sizes:
        here = "present" if (dest / rf.relpath).exists() else ""
        _line(f"{format_bytes(size):>9}  {here:<7}  {rf.relpath}")
    total = sum(s for _, s in sizes if s is not None)
    unknown = sum(s is None for _, s in sizes)
    extra = f" ({unknown} of unknown size)" if unknown else ""
    console.print(f"dry run: {len(sizes)} file(s), total {format_bytes(total)} ({total} bytes){extra}; "
                  "nothing downloaded", soft_wrap=True, highlight=False)
    if targets:
        console.print("with --targets only the selected targets' bytes would be read", soft_wrap=True)


def _print_extract(rf: RemoteFile, res: ExtractResult) -> None:
    if res.skipped:
        console.print(f"{rf.name}: cut already present, nothing fetched: {res.path}", soft_wrap=True,
                      highlight=False)
        return
    if res.path is None:
        console.print(f"{rf.name}: none of the requested targets is in this file "
                      f"({res.nspec} targets; fetched {format_bytes(res.bytes_fetched)})", soft_wrap=True,
                      highlight=False)
        return
    console.print(
        f"{rf.name}: {len(res.found)} of {res.nspec} targets; fetched {res.bytes_fetched} of "
        f"{res.file_size} bytes ({100 * res.fraction:.1f}%, {format_bytes(res.bytes_fetched)} of "
        f"{format_bytes(res.file_size)}) in {res.requests} requests -> {res.path}",
        soft_wrap=True,
        highlight=False,
    )


def _extract_all(files: list[RemoteFile], targetids: list[int], *, base_url: str, dest: Path,
                 jobs: int, client: HttpClient) -> list[ExtractResult]:
    results = []
    with progress_bar() as progress:
        task = progress.add_task("cutting targets (files)", total=len(files))
        for rf in files:
            out = dest / rf.directory / output_name(rf.name, targetids)
            res = extract_targets(file_url(base_url, rf.relpath), out, targetids, client=client, jobs=jobs)
            results.append(res)
            progress.advance(task)
            _print_extract(rf, res)
    found = {t for r in results for t in r.found}
    if not found:
        raise InputError(
            f"none of the {len(set(targetids))} TARGETIDs is in the selected files",
            parameter="--targets",
            hint="check --healpix/--survey/--program (the zcatalog has HEALPIX, SURVEY, PROGRAM per TARGETID)",
        )
    missing = sorted(set(targetids) - found)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        console.print(f"[yellow]not found in any selected file[/]: {shown}", soft_wrap=True, highlight=False)
    total = sum(r.bytes_fetched for r in results)
    size = sum(r.file_size for r in results if not r.skipped)
    if size:
        console.print(f"total: fetched {total} of {size} bytes ({100 * total / size:.1f}%)", highlight=False)
    return results


def register(app: typer.Typer) -> None:
    """Add the ``fetch`` command to *app*."""

    @app.command("fetch", help=HELP, no_args_is_help=True)
    def fetch(
        ctx: typer.Context,
        products: list[str] = typer.Argument(..., metavar="PRODUCT...", help="What to fetch (see above)."),
        survey: str = typer.Option("main", "--survey", help="cmx, main, special, sv1, sv2, sv3 (zcatalog: all)."),
        program: str = typer.Option("dark", "--program", help="backup, bright, dark, other."),
        healpix: str | None = typer.Option(
            None, "--healpix", help="nside=64 NESTED pixels, comma-separated, e.g. 10016,10017."
        ),
        healpix_file: Path | None = typer.Option(
            None, "--healpix-file", help="File of healpix pixels (commas/blanks/newlines; # comments)."
        ),
        version: str | None = typer.Option(
            None, "--version", help="Product version (zcatalog v1, fastspecfit v3.0|v2.1, desivast v1.0, qso v0)."
        ),
        targets: str | None = typer.Option(
            None, "--targets", help="TARGETIDs to cut from coadd/redrock files by range requests."
        ),
        targets_file: Path | None = typer.Option(None, "--targets-file", help="File of TARGETIDs."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List files and sizes (HEAD); download nothing."),
        jobs: int = typer.Option(4, "--jobs", help="Parallel downloads (or range requests with --targets)."),
        base_url: str | None = typer.Option(
            None, "--base-url", help="Release root URL (default: setting release_url, env DESILAB_RELEASE_URL)."
        ),
        dest: Path | None = typer.Option(
            None, "--dest", help="Local mirror root (default: setting data_dir, env DESILAB_DATA_DIR)."
        ),
        no_verify: bool = typer.Option(False, "--no-verify", help="Skip the sha256 check (not recommended)."),
    ) -> None:
        settings = ctx.obj.settings
        if jobs < 1:
            raise InputError(f"must be >= 1, got {jobs}", parameter="--jobs")
        pixels = _ints(healpix, healpix_file, option="--healpix", file_option="--healpix-file")
        targetids = _ints(targets, targets_file, option="--targets", file_option="--targets-file")
        if targetids:
            other = [p for p in products if p not in ("coadd", "redrock")]
            if other:
                raise InputError(
                    f"--targets cuts coadd/redrock files only, not {', '.join(other)}",
                    parameter="--targets",
                    hint="fetch the other products in a separate command",
                )
        try:
            selection = Selection(
                tuple(products),
                survey=survey,
                program=program,
                healpix=tuple(pixels),
                version=version,
                specprod=settings.specprod,
            )
        except InputError as exc:
            exc.parameter = _OPTION.get(exc.parameter or "", exc.parameter)
            raise
        url = _check_url(base_url or settings.release_url)
        root = dest if dest is not None else settings.data_dir
        files = plan(selection)
        client = HttpClient()
        if dry_run:
            _print_dry_run(probe_sizes(files, base_url=url, jobs=jobs, client=client), root, bool(targetids))
            return
        if targetids:
            _extract_all(files, targetids, base_url=url, dest=root, jobs=jobs, client=client)
            return
        with progress_bar() as progress:
            results = download(files, base_url=url, dest=root, jobs=jobs, verify=not no_verify,
                               client=client, progress=progress)
        _print_downloads(results)
