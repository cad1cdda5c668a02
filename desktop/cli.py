"""The one `diffusion-studio` command.

With no arguments it opens the app; otherwise the first argument names a subcommand. Each
subcommand lives in its own module and is imported only when used, so `generate` never pulls in
torch and the app starts fast. A subcommand whose optional dependencies are missing says which
extra to install instead of printing a traceback.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    name: str
    target: str  # "package.module:function", called with the remaining argv
    summary: str
    extra: str | None  # the pip extra it needs beyond the base install
    owns_threads: bool = False  # every ONNX Runtime session of the process is ours: it picks the thread policy


SUBCOMMANDS = (
    Subcommand("app", "desktop.ui.app:main", "open the desktop app (the default)", None, True),
    Subcommand("generate", "desktop.runtime.generate_cli:main", "generate images from a model bundle", None, True),
    Subcommand("info", "desktop.runtime.info_cli:main", "describe a model bundle and what it accepts", None, True),
    Subcommand("train", "engine.train_cli:main", "train a VAE, pixel DDPM or latent diffusion model", "engine"),
    Subcommand("make-dataset", "engine.data.cli:main", "write a procedural or built-in data set as an image folder", "engine"),
    Subcommand("export", "export.cli:main", "export a training run or diffusers folder to a model bundle", "engine"),
    Subcommand("desktop-entry", "desktop.runtime.desktop_entry:main", "add the app to the Linux desktop's menu", None),
)


def usage() -> str:
    width = max(len(s.name) for s in SUBCOMMANDS)
    lines = [
        "usage: diffusion-studio [SUBCOMMAND] [ARGS...]",
        "",
        "Offline image generation with diffusion models. With no subcommand, opens the app.",
        "",
        "subcommands:",
    ]
    for s in SUBCOMMANDS:
        needs = f"  (needs the '{s.extra}' extra)" if s.extra else ""
        lines.append(f"  {s.name.ljust(width)}  {s.summary}{needs}")
    lines += ["", "Run 'diffusion-studio SUBCOMMAND --help' for a subcommand's options."]
    return "\n".join(lines)


def _missing_extra_message(sub: Subcommand, exc: ModuleNotFoundError) -> str | None:
    root = (exc.name or "").split(".")[0]
    from desktop.runtime.installation import ENGINE_MODULES

    if sub.extra and root in ENGINE_MODULES:
        return (
            f"diffusion-studio {sub.name}: needs the '{sub.extra}' extra ({root} is not installed); "
            f"install it with: pip install 'diffusion-studio[{sub.extra}]'"
        )
    return None


def resolve(sub: Subcommand):
    module_name, func_name = sub.target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` None means a program run (`diffusion-studio`, `python -m desktop`), which
    owns its process: the app, `generate` and `info` then choose ONNX Runtime's thread policy
    (providers.configure_program_threads: threads that stop spinning when a run ends, unless
    DIFFUSION_STUDIO_THREADS says otherwise). A caller passing argv (tests, other programs) keeps ONNX Runtime's
    default, since a shared pool makes ONNX Runtime refuse sessions created with default options."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    from desktop.runtime.installation import installation_problem

    problem = installation_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    by_name = {s.name: s for s in SUBCOMMANDS}
    if not argv or argv[0].startswith("-"):
        sub, rest = by_name["app"], argv
    elif argv[0] in by_name:
        sub, rest = by_name[argv[0]], argv[1:]
    else:
        print(f"diffusion-studio: unknown subcommand '{argv[0]}'\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        if sub.owns_threads and program:
            from desktop.runtime.providers import ProviderError, configure_program_threads

            try:
                configure_program_threads()
            except ProviderError as exc:
                print(exc, file=sys.stderr)
                return 2
        func = resolve(sub)
        result = func(rest)
        sys.stdout.flush()  # a closed pipe (`info | head`) shows here, not as a message at exit
    except BrokenPipeError:
        _stdout_to_devnull()
        return 141  # as a program stopped by SIGPIPE: nobody is reading, so nothing more to say
    except ModuleNotFoundError as exc:
        message = _missing_extra_message(sub, exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
