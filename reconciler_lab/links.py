"""The `<link rel>`s and `<actions>` the lab lists, and what each answers.

The engine lists every sub-collection of an entity (LinkHelper) and clients follow them blindly:
the `ovirt.ovirt` info modules' `fetch_nested` follows every listed link, `ovirt_vm` lists
`numanodes` on every run. The lab lists the engine's rels; the ones it models answer their data,
the others answer the collection the engine would return for an entity that has none of them (an
empty list, under the root tag the SDK's readers expect). Rels the lab cannot answer truthfully
even as an empty list are not listed.
"""
from __future__ import annotations

# rel -> root tag of the collection; rels the API serves with data are routed before these.
HOST_LINKS: dict[str, str] = {
    "affinitylabels": "affinity_labels", "devices": "host_devices",
    "externalnetworkproviderconfigurations": "external_network_provider_configurations",
    "fenceagents": "agents", "hooks": "hooks", "katelloerrata": "katello_errata",
    "networkattachments": "network_attachments", "nics": "host_nics",
    "numanodes": "host_numa_nodes", "permissions": "permissions", "statistics": "statistics",
    "storage": "host_storages", "storageconnectionextensions": "storage_connection_extensions",
    "tags": "tags", "unmanagednetworks": "unmanaged_networks",
}
HOST_ACTIONS = ("activate", "deactivate", "fence", "install", "refresh", "upgrade",
                "upgradecheck")

VM_LINKS: dict[str, str] = {
    "affinitylabels": "affinity_labels", "applications": "applications", "cdroms": "cdroms",
    "diskattachments": "disk_attachments", "graphicsconsoles": "graphics_consoles",
    "hostdevices": "host_devices", "katelloerrata": "katello_errata",
    "mediateddevices": "vm_mediated_devices", "nics": "nics", "numanodes": "vm_numa_nodes",
    "permissions": "permissions", "reporteddevices": "reported_devices", "sessions": "sessions",
    "snapshots": "snapshots", "statistics": "statistics", "tags": "tags",
    "watchdogs": "watchdogs",
}
VM_ACTIONS = ("shutdown", "start", "stop")

CLUSTER_LINKS: dict[str, str] = {
    "affinitygroups": "affinity_groups", "cpuprofiles": "cpu_profiles",
    "enabledfeatures": "cluster_features", "glusterhooks": "gluster_hooks",
    "glustervolumes": "gluster_volumes", "networkfilters": "network_filters",
    "networks": "networks", "permissions": "permissions",
}

DATA_CENTER_LINKS: dict[str, str] = {
    "clusters": "clusters", "iscsibonds": "iscsi_bonds", "networks": "networks",
    "permissions": "permissions", "qoss": "qoss", "quotas": "quotas",
    "storagedomains": "storage_domains",
}

TEMPLATE_LINKS: dict[str, str] = {
    "cdroms": "cdroms", "diskattachments": "disk_attachments",
    "graphicsconsoles": "graphics_consoles", "mediateddevices": "vm_mediated_devices",
    "nics": "nics", "permissions": "permissions", "tags": "tags", "watchdogs": "watchdogs",
}

# Top-level collections of `GET /` (and what the SDK's system service builds paths to).
API_LINKS = ("clusters", "datacenters", "events", "hosts", "templates", "vms")

# For `follow`: a link name as clients write it (`host_devices`) -> its rel (`hostdevices`).
def rel(segment: str) -> str:
    return segment.replace("_", "").strip().lower()


def links_xml(base: str, rels: dict[str, str] | tuple[str, ...],
              actions: tuple[str, ...] = ()) -> str:
    parts = []
    if actions:
        parts.append("<actions>")
        parts.extend(f'<link href="{base}/{a}" rel="{a}"/>' for a in actions)
        parts.append("</actions>")
    parts.extend(f'<link href="{base}/{r}" rel="{r}"/>' for r in rels)
    return "".join(parts)


__all__ = ["API_LINKS", "CLUSTER_LINKS", "DATA_CENTER_LINKS", "HOST_ACTIONS", "HOST_LINKS",
           "TEMPLATE_LINKS", "VM_ACTIONS", "VM_LINKS", "links_xml", "rel"]
