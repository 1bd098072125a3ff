"""Drives Debian's packaged cloud-init Azure datasource (unmodified) against whatever answers at
169.254.169.254 in the current network namespace, and prints one JSON object on stdout:

  {"cloudInitVersion", "imdsVerWant", "imdsVerMin",
   "full":     what DataSourceAzure.get_imds_data_with_api_fallback() returned (all of /metadata/instance),
   "network":  the same helper with MetadataType.NETWORK (/metadata/instance/network),
   "minVersion": get_metadata_from_imds() at cloud-init's fallback api-version,
   "derived":  what cloud-init makes of "full" (hostname, user, ssh keys, userdata, netplan v2 config, ...),
   "logs":     cloud-init's own log records}

Usage: /usr/bin/python3 cloudinit_probe.py <cloud-init dist-packages dir> <scratch dir>
Run with Debian's python (the package's dependencies come from apt).
"""
import base64
import json
import logging
import os
import sys
import warnings


def main():
    dist_packages, scratch = sys.argv[1], sys.argv[2]
    sys.path.insert(0, dist_packages)
    warnings.simplefilter("ignore", DeprecationWarning)  # cloud-init 22.4 imports `crypt`

    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append({"level": record.levelname, "logger": record.name, "message": record.getMessage()})

    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(Capture())

    from cloudinit import helpers, version
    from cloudinit.sources import DataSourceAzure as dsaz

    paths = helpers.Paths(
        {
            "cloud_dir": os.path.join(scratch, "cloud"),
            "run_dir": os.path.join(scratch, "run"),
            "docs_dir": scratch,
            "templates_dir": scratch,
        }
    )
    ds = dsaz.DataSourceAzure({}, distro=None, paths=paths)

    out = {
        "cloudInitVersion": version.version_string(),
        "imdsVerWant": dsaz.IMDS_VER_WANT,
        "imdsVerMin": dsaz.IMDS_VER_MIN,
    }

    # What cloud-init's _crawl_metadata() does first: the whole document, newest api-version first,
    # falling back to IMDS_VER_MIN only on HTTP 400.
    full = ds.get_imds_data_with_api_fallback(retries=2)
    out["full"] = full
    # What _check_if_nic_is_primary() asks for (route filtering: /metadata/instance/network).
    out["network"] = ds.get_imds_data_with_api_fallback(retries=2, md_type=dsaz.MetadataType.NETWORK)
    # The fallback version, requested directly.
    try:
        out["minVersion"] = dsaz.get_metadata_from_imds(retries=2, api_version=dsaz.IMDS_VER_MIN)
    except Exception as e:  # noqa: BLE001 - reported to the test
        out["minVersion"] = {"error": repr(e)}

    derived = {}
    if full:
        derived["hostname"] = dsaz._hostname_from_imds(full)
        derived["username"] = dsaz._username_from_imds(full)
        derived["disablePassword"] = dsaz._disable_password_from_imds(full)
        userdata = dsaz._userdata_from_imds(full)
        derived["userData"] = base64.b64decode("".join(userdata.split())).decode() if userdata else userdata
        try:
            derived["sshKeys"] = ds._get_public_keys_from_imds(full)
        except (KeyError, ValueError) as e:
            derived["sshKeys"] = {"error": repr(e)}
        derived["networkConfig"] = dsaz.generate_network_config_from_instance_network_metadata(full["network"])
        ds.metadata = {"imds": full}
        derived["region"] = ds.region
        derived["availabilityZone"] = ds.availability_zone
    out["derived"] = derived
    out["logs"] = records
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
