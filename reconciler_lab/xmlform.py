"""The engine's XML form: element order, dates and the document declaration.

The SDK's writers put every member of a type in one alphabetical run. The engine marshals with JAXB
from the schema the API metamodel generates (metamodel `SchemaGenerator#writeStructMembers`):
`<actions>`, then `name`, `description`, `comment` and the `<link>`s of the hand-written
`BaseResource` (engine `restapi/.../schema/api.xsd`), then, for each type from the base down, its
declared attributes sorted by name followed by its declared links sorted by name. So a VM lists its
`VmBase` members before its `Vm` ones. This module reorders the top-level children of a written
entity into that order; nested structs (cpu, os, ...) are plain sorted in both and left alone.

Dates: JAXB writes `XMLGregorianCalendar` with milliseconds and `Z` for UTC
(`2026-12-04T21:31:47.123Z`); the SDK writer writes Python's `isoformat()` (microseconds,
`+00:00`). Documents start with the declaration JAXB writes.
"""
from __future__ import annotations

import re
from xml.parsers import expat

DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

_BASE_RESOURCE = ("actions", "name", "description", "comment", "link")


def _sorted(names: str) -> tuple[str, ...]:
    # metamodel Name#compareTo compares word by word.
    return tuple(sorted(names.split(), key=lambda n: n.split("_")))


# Declared members per model type (ovirt-engine-api-model types/*.java), attributes then links,
# as XML tags. Host's transparentHugePages is written as <transparent_hugepages>.
_VM_BASE = _sorted(
    "auto_pinning_policy bios console cpu cpu_pinning_policy cpu_shares creation_time "
    "custom_compatibility_version custom_cpu_model custom_emulated_machine custom_properties "
    "delete_protected display domain high_availability initialization io large_icon lease memory "
    "memory_policy migration migration_downtime multi_queues_enabled origin os placement_policy "
    "rng_device serial_number small_icon soundcard_enabled sso start_paused stateless "
    "storage_error_resume_behaviour time_zone tpm_enabled tunnel_migration type usb virtio_scsi "
    "virtio_scsi_multi_queues virtio_scsi_multi_queues_enabled") + _sorted(
    "cluster cpu_profile quota storage_domain")
_VM = _sorted(
    "fqdn guest_operating_system guest_time_zone has_illegal_images next_run_configuration_exists "
    "numa_tune_mode payloads run_once start_time status status_detail stop_reason stop_time "
    "use_latest_template_version") + _sorted(
    "affinity_labels applications cdroms disk_attachments dynamic_cpu external_host_provider "
    "floppies graphics_consoles host host_devices instance_type katello_errata mediated_devices "
    "nics numa_nodes original_template permissions reported_devices sessions snapshots statistics "
    "tags template vm_pool watchdogs")
_HOST = tuple(t if t != "transparent_huge_pages" else "transparent_hugepages" for t in _sorted(
    "address auto_numa_status certificate cpu device_passthrough display external_status "
    "hardware_information hosted_engine iscsi kdump_status ksm libvirt_version "
    "max_scheduling_memory memory network_operation_in_progress numa_supported os "
    "override_iptables ovn_configured port power_management protocol reinstallation_required "
    "root_password se_linux spm ssh status status_detail summary transparent_huge_pages type "
    "update_available version vgpu_placement")) + _sorted(
    "affinity_labels agents cluster cpu_units devices external_host_provider "
    "external_network_provider_configurations hooks katello_errata network_attachments nics "
    "numa_nodes permissions statistics storage_connection_extensions storages tags "
    "unmanaged_networks")
_CLUSTER = _sorted(
    "ballooning_enabled bios_type cpu custom_scheduling_policy_properties display error_handling "
    "fencing_policy fips_mode firewall_type gluster_service gluster_tuned_profile ha_reservation "
    "ksm log_max_memory_used_threshold log_max_memory_used_threshold_type "
    "maintenance_reason_required memory_policy migration optional_reason required_rng_sources "
    "serial_number supported_versions switch_type threads_as_cores trusted_service "
    "tunnel_migration upgrade_correlation_id upgrade_in_progress upgrade_percent_complete version "
    "virt_service vnc_encryption") + _sorted(
    "affinity_groups cpu_profiles data_center enabled_features external_network_providers "
    "gluster_hooks gluster_volumes mac_pool management_network network_filters networks "
    "permissions scheduling_policy")
_EVENT = _sorted("code correlation_id custom_data custom_id flood_rate index log_on_host origin "
                 "severity time") + _sorted("cluster data_center host storage_domain template "
                                            "user vm")
_HOST_DEVICE = _sorted("capability driver iommu_group m_dev_types physical_function placeholder "
                       "product vendor virtual_functions") + _sorted("host parent_device vm")
_DEVICE_LINKS = _sorted("instance_type template vm vms")
_DATA_CENTER = _sorted("local quota_mode status storage_format supported_versions version") + \
    _sorted("clusters iscsi_bonds mac_pool networks permissions qoss quotas storage_domains")
_TEMPLATE = _sorted("status version vm") + _sorted(
    "cdroms disk_attachments graphics_consoles mediated_devices nics permissions tags watchdogs")

ORDER: dict[str, tuple[str, ...]] = {
    "vm": _BASE_RESOURCE + _VM_BASE + _VM,
    "template": _BASE_RESOURCE + _VM_BASE + _TEMPLATE,
    "host": _BASE_RESOURCE + _HOST,
    "cluster": _BASE_RESOURCE + _CLUSTER,
    "event": _BASE_RESOURCE + _EVENT,
    "host_device": _BASE_RESOURCE + _HOST_DEVICE,
    "vm_mediated_device": _BASE_RESOURCE + _DEVICE_LINKS + ("spec_params",),
    "graphics_console": _BASE_RESOURCE + _sorted("address port protocol tls_port")
    + _sorted("instance_type template vm"),
    "data_center": _BASE_RESOURCE + _DATA_CENTER,
    "api": _BASE_RESOURCE + _sorted("engine_backup product_info special_objects summary time")
    + _sorted("authenticated_user effective_user"),
}

_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(?:\+00:00|Z)")


def engine_dates(xml: str) -> str:
    """Every UTC timestamp as JAXB writes it: milliseconds, `Z`."""
    return _TIME.sub(lambda m: f"{m.group(1)}.{(m.group(2) or '').ljust(3, '0')[:3]}Z", xml)


def _child_starts(data: bytes) -> list[tuple[str, int]]:
    """(tag, byte offset) of each child of the document element, from expat's positions."""
    parser = expat.ParserCreate()
    starts: list[tuple[str, int]] = []
    depth = 0

    def start(name: str, _attrs: object) -> None:
        nonlocal depth
        depth += 1
        if depth == 2:
            starts.append((name, parser.CurrentByteIndex))

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(data, True)
    return starts


Piece = tuple[str, bytes]


def split(xml: str) -> tuple[bytes, list[Piece], bytes]:
    """A written element as (start tag, its children as (tag, bytes), end tag). The SDK writes no
    whitespace between elements, so each child runs to the next one's start."""
    data = xml.encode("utf-8")
    starts = _child_starts(data)
    close = data.rindex(b"</") if not data.endswith(b"/>") else len(data)
    if not starts:
        return data[:close], [], data[close:]
    bounds = [at for _, at in starts] + [close]
    pieces = [(name, data[bounds[i]:bounds[i + 1]]) for i, (name, _) in enumerate(starts)]
    return data[:starts[0][1]], pieces, data[close:]


def engine_order(xml: str, tag: str | None = None, extra: list[Piece] = ()) -> str:  # type: ignore[assignment]
    """One written entity (plus `extra` children written elsewhere) with its top-level children
    in the engine's order (see module doc). Children with the same tag (the `<link>`s) keep
    their relative order. Children are moved as the bytes the SDK wrote, never re-serialised:
    a list of 10,000 VMs stays cheap, and `<x></x>` (an empty string, which the SDK reads back as
    "") stays as it is."""
    head, pieces, tail = split(xml)
    root = tag or head[1:].split(b">", 1)[0].split(b" ", 1)[0].decode()
    order = ORDER.get(root)
    if order is None:
        return xml
    rank = {name: i for i, name in enumerate(order)}
    pieces = sorted(pieces + list(extra), key=lambda p: rank.get(p[0], len(rank)))
    return (head + b"".join(p for _, p in pieces) + tail).decode("utf-8")


__all__ = ["DECLARATION", "ORDER", "Piece", "engine_dates", "engine_order", "split"]
