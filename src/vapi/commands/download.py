"""`vapi download lpips|inception`: fetch third-party weights into torch's hub cache (needs internet).

`lpips` fetches torchvision's VGG16 and AlexNet backbones (the LPIPS reward of LlamaGen and Janus runs);
`inception` torch-fidelity's FID Inception (`vapi eval`, train.gen_metrics_features=inception). Files already in
the cache are kept. The download is torch's own (`torch.hub.download_url_to_file`), into
`$TORCH_HOME/hub/checkpoints/`, with the SHA-256 prefix in each file name checked.
"""
from __future__ import annotations

import argparse

from vapi.weights import GROUPS, WEIGHT_FILES

CHOICES = (*GROUPS, *WEIGHT_FILES, "all")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("download", help="fetch LPIPS / Inception weights into torch's hub cache",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", choices=CHOICES, metavar="NAME",
                   help=f"what to fetch: {', '.join(CHOICES)}")
    p.add_argument("--base-url", default=None,
                   help="fetch from this folder URL instead of the public one (a mirror, or file:///dir/)")
    p.add_argument("--no-check-hash", action="store_true",
                   help="skip the SHA-256 prefix check (only for mirrors that re-saved the files)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vapi.commands import UserError
    from vapi.weights import cache_path, download

    names = []
    for n in args.names:
        names += list(WEIGHT_FILES) if n == "all" else list(GROUPS.get(n, (n,)))
    for name in dict.fromkeys(names):
        if cache_path(name).is_file():
            print(f"{name}: already present at {cache_path(name)}")
            continue
        try:
            path = download(name, args.base_url, check_hash=not args.no_check_hash)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a hash mismatch a RuntimeError
            raise UserError(f"could not fetch {WEIGHT_FILES[name].file} from "
                            f"{args.base_url or WEIGHT_FILES[name].url}: {e}") from None
        print(f"{name}: wrote {path}")
    return 0
