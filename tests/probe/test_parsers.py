"""Parsers against the real output formats of shared host-facts notes (sections cited)."""
from __future__ import annotations

import pytest

from reconciler.observe import parsers as p
from reconciler.observe.parsers import ParseError

M60_KERNELOPTS = ("root=/dev/mapper/rhel-root ro crashkernel=auto resume=/dev/mapper/rhel-swap "
                  "rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet intel_iommu=on")


def test_proc_cmdline_one_line() -> None:
    assert p.parse_proc_cmdline("BOOT_IMAGE=/vmlinuz-5.14 ro quiet\n") == "BOOT_IMAGE=/vmlinuz-5.14 ro quiet"
    with pytest.raises(ParseError):
        p.parse_proc_cmdline("a\nb\n")
    with pytest.raises(ParseError):
        p.parse_proc_cmdline("")


def test_bls_entry_rhel8_expands_kernelopts_and_tuned_params() -> None:   # § 1.5
    grubenv = p.parse_grubenv("# GRUB Environment Block\nsaved_entry=x\nkernelopts=" + M60_KERNELOPTS
                              + "\nboot_success=0\n" + "#" * 200)
    entry = p.parse_bls_entry("abc-4.18.0", (
        "title Red Hat Enterprise Linux (4.18.0-477.10.1.el8_8.x86_64) 8.8 (Ootpa)\n"
        "version 4.18.0-477.10.1.el8_8.x86_64\nlinux /vmlinuz-4.18.0-477.10.1.el8_8.x86_64\n"
        "initrd /initramfs-4.18.0-477.10.1.el8_8.x86_64.img $tuned_initrd\n"
        "options $kernelopts $tuned_params\nid rhel-20230411-4.18.0\n"
        "grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel\n"), grubenv)
    assert entry.kernel == "/vmlinuz-4.18.0-477.10.1.el8_8.x86_64"
    assert entry.options == M60_KERNELOPTS
    tuned = p.parse_bls_entry("e", "linux /vmlinuz\noptions $kernelopts ${tuned_params}\n",
                              {"kernelopts": "ro", "tuned_params": "skew_tick=1"})
    assert tuned.options == "ro skew_tick=1"


def test_bls_entry_rhel9_literal_options() -> None:
    entry = p.parse_bls_entry("x", "title T\nlinux /vmlinuz-5.14\noptions root=/dev/x ro "
                              "vfio-pci.ids=10de:2331 $tuned_params\n")
    assert entry.options == "root=/dev/x ro vfio-pci.ids=10de:2331"
    with pytest.raises(ParseError):
        p.parse_bls_entry("bad", "<html>not an entry</html>\n")


def test_grubby_info_all_quoted_values() -> None:   # § 1.5, Oracle Linux doc format
    out = ('index=0\nkernel="/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"\n'
           'args="ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M intel_iommu=on $tuned_params"\n'
           'root="/dev/mapper/rhel-root"\ninitrd="/boot/initramfs-5.14.0-427.13.1.el9_4.x86_64.img $tuned_initrd"\n'
           'title="Red Hat Enterprise Linux (5.14.0-427.13.1.el9_4.x86_64) 9.4 (Plow)"\n'
           'id="0d7c-5.14.0-427.13.1.el9_4.x86_64"\nindex=1\nkernel="/boot/vmlinuz-0-rescue"\n'
           'args="ro"\nid="0d7c-0-rescue"\n')
    a, b = p.parse_grubby_info(out)
    assert a.id == "0d7c-5.14.0-427.13.1.el9_4.x86_64"
    assert a.kernel == "/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"
    assert a.options.endswith("intel_iommu=on")
    assert p.parse_grubby_info(out, {"tuned_params": "skew_tick=1"})[0].options.endswith("intel_iommu=on skew_tick=1")
    assert b.options == "ro"
    with pytest.raises(ParseError):
        p.parse_grubby_info('kernel="/boot/x"\n')


def test_default_grub() -> None:
    text = ('GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="$(sed \'s, release .*$,,g\' /etc/system-release)"\n'
            'GRUB_CMDLINE_LINUX="crashkernel=auto rhgb quiet intel_iommu=on"\n'
            "# GRUB_CMDLINE_LINUX=\"old\"\nGRUB_ENABLE_BLSCFG=true\n")
    assert p.parse_default_grub(text) == "crashkernel=auto rhgb quiet intel_iommu=on"
    assert p.parse_default_grub("GRUB_TIMEOUT=5\n") is None
    with pytest.raises(ParseError):
        p.parse_default_grub('GRUB_CMDLINE_LINUX="unterminated\n')


def test_modprobe_syntax() -> None:   # § 2.1, modprobe.d(5)
    text = ("# comment\n\nblacklist nouveau\noptions nouveau modeset=0\n"
            "options vfio-pci ids=10de:2331,10de:22a3 \\\n  disable_vga=1\n"
            "install nouveau /bin/false\ninstall radeon /bin/true\n"
            "install i915 /sbin/modprobe --ignore-install i915 && /bin/true\n"
            "softdep nvidia pre: vfio-pci\nalias pci:v000010DEd* nvidia\nblacklist snd-hda-intel\n")
    conf = p.parse_modprobe_conf("/etc/modprobe.d/x.conf", text)
    assert conf.blacklist == ("nouveau", "snd_hda_intel")
    assert conf.options == (("nouveau", "modeset=0"), ("vfio_pci", "ids=10de:2331,10de:22a3 disable_vga=1"))
    assert conf.install_false == ("nouveau", "radeon")
    assert conf.sha256 and len(conf.sha256) == 64
    assert p.parse_softdeps(text) == (("nvidia", ("vfio_pci",), ()),)
    with pytest.raises(ParseError):
        p.parse_modprobe_conf("/etc/modprobe.d/bad.conf", "blacklist\n")
    with pytest.raises(ParseError):
        p.parse_modprobe_conf("/etc/modprobe.d/bad.conf", "frobnicate nouveau\n")


def test_module_blacklisted_in_two_files_and_precedence() -> None:   # § 2.1, § 2.2
    files = {
        "/etc/modprobe.d/blacklist-nouveau.conf": "blacklist nouveau\noptions nouveau modeset=0\n",
        "/etc/modprobe.d/nvidia-installer-disable-nouveau.conf": "blacklist nouveau\n",
        "/etc/modprobe.d/local.conf": "",
        "/usr/lib/modprobe.d/local.conf": "blacklist ast\n",
        "/usr/lib/modprobe.d/dist-blacklist.conf": "blacklist i8xx_tco\n",
        "/usr/lib/modprobe.d/README": "not a conf file\n",
    }
    effective = p.effective_modprobe_files(files)
    assert [path for path, _ in effective] == [
        "/etc/modprobe.d/blacklist-nouveau.conf", "/usr/lib/modprobe.d/dist-blacklist.conf",
        "/etc/modprobe.d/local.conf", "/etc/modprobe.d/nvidia-installer-disable-nouveau.conf"]
    parsed = [p.parse_modprobe_conf(path, text) for path, text in effective]
    assert sum("nouveau" in f.blacklist for f in parsed) == 2
    assert not any("ast" in f.blacklist for f in parsed)    # masked by the empty /etc file


def test_lsinitrd_listing_and_blacklist() -> None:   # § 2.3, § 8.B
    listing = ("Image: /boot/initramfs-5.14.img: 38M\n" + "=" * 72 + "\n"
               "-rw-r--r--   1 root     root           31 Jan  1 00:00 etc/modprobe.d/vfio.conf\n"
               "-rw-r--r--   1 root     root           44 Jan  1 00:00 etc/modprobe.d/blacklist-nouveau.conf\n"
               "lrwxrwxrwx   1 root     root            9 Jan  1 00:00 etc/modprobe.d/x.conf -> /dev/null\n"
               "drwxr-xr-x   2 root     root            0 Jan  1 00:00 etc/modprobe.d\n"
               "-rw-r--r--   1 root     root        41052 Jan  1 00:00 usr/lib/modules/5.14/kernel/drivers/vfio/pci/vfio-pci.ko.xz\n")
    paths = p.parse_lsinitrd_listing(listing)
    assert paths == ("etc/modprobe.d/vfio.conf", "etc/modprobe.d/blacklist-nouveau.conf",
                     "etc/modprobe.d/x.conf")
    assert p.initramfs_blacklist([("etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:2331\n"),
                                  ("etc/modprobe.d/b.conf", "blacklist nouveau\ninstall nvidia /bin/false\n")]) \
        == ("nouveau", "nvidia")
    assert p.initramfs_blacklist([]) == ()


def test_proc_modules_and_lsmod() -> None:   # § 4.4
    proc = ("nvidia_vgpu_vfio 65536 3 - Live 0xffffffffc0b9a000 (POE)\n"
            "mdev 20480 2 vfio_mdev,nvidia_vgpu_vfio, Live 0xffffffffc0b8c000\n")
    assert p.parse_proc_modules(proc) == ("nvidia_vgpu_vfio", "mdev")
    lsmod = ("Module                  Size  Used by\n"
             "nvidia_vgpu_vfio       65536  0\nnvidia              39067648  11\n"
             "mdev                   20480  2 vfio_mdev,nvidia_vgpu_vfio\n")
    assert p.parse_lsmod(lsmod) == ("nvidia_vgpu_vfio", "nvidia", "mdev")
    with pytest.raises(ParseError):
        p.parse_proc_modules("garbage\n")


def test_systemctl() -> None:   # § 7
    assert p.parse_systemctl_is_active("active\n") == "active"
    assert p.service_state("inactive\n", "LoadState=not-found\nActiveState=inactive\nSubState=dead\n") == "not-found"
    assert p.service_state("failed\n", "LoadState=loaded\nActiveState=failed\nSubState=failed\n") == "failed"
    assert p.service_state("active\n", None) == "active"
    with pytest.raises(ParseError):
        p.parse_systemctl_is_active("Failed to connect to bus: No such file or directory")


def test_sysfs_values() -> None:   # § 3.2
    assert p.parse_sysfs_hex("0x10de\n", 4) == "0x10de"
    assert p.parse_sysfs_hex("0x030200\n", 6) == "0x030200"
    assert p.parse_sysfs_int("32\n") == 32
    with pytest.raises(ParseError):
        p.parse_sysfs_hex("10de\n", 4)
    with pytest.raises(ParseError):
        p.parse_sysfs_int("(null)\n")


def test_mdev_description_and_zero_instances_left() -> None:   # § 4.1, § 4.2
    desc = "num_heads=4, frl_config=60, framebuffer=2048M, max_resolution=4096x2160, max_instance=4\n"
    assert p.parse_mdev_description(desc) == {"num_heads": "4", "frl_config": "60",
                                              "framebuffer": "2048M", "max_resolution": "4096x2160",
                                              "max_instance": "4"}
    assert p.mdev_max_instances(desc) == 4
    locked = p.parse_mdev_type("0000:05:00.0", "nvidia-22", {
        "name": "GRID M60-8Q\n", "description": desc, "available_instances": "0\n",
        "device_api": "vfio-pci\n"})
    assert locked.available_instances == 0 and locked.human_name == "GRID M60-8Q"
    assert locked.device_api == "vfio-pci"
    with pytest.raises(ParseError):
        p.parse_mdev_description("garbage without equals")


def test_creatable_vgpu_types_per_vf() -> None:   # § 5.2 (NVSRC format, RFC example)
    text = "ID    : vGPU Name\n941   : NVIDIA RTX6000-Ada-1Q\n942   : NVIDIA RTX6000-Ada-2Q\n"
    assert p.parse_creatable_vgpu_types(text) == ((941, "NVIDIA RTX6000-Ada-1Q"),
                                                  (942, "NVIDIA RTX6000-Ada-2Q"))
    assert p.parse_creatable_vgpu_types("ID    : vGPU Name\n") == ()    # full card / VF beyond max
    with pytest.raises(ParseError):
        p.parse_creatable_vgpu_types("ID    : vGPU Name\nNVIDIA L40S-2Q\n")


def test_nvidia_smi_csv() -> None:   # § 6.5
    s = p.parse_nvidia_smi_csv("00000000:05:00.0, Tesla M60, 535.161.05, 8192, 6199, 3\n"
                               "00000000:06:00.0, Tesla M60, 535.161.05, 8192, [N/A], [N/A]\n")
    assert s.driver_version == "535.161.05"
    assert [g.bus_id for g in s.gpus] == ["00000000:05:00.0", "00000000:06:00.0"]
    assert s.gpus[0].memory_used_mib == 6199 and s.gpus[1].utilization_percent is None
    assert p.parse_nvidia_smi_csv("").gpus == ()
    with pytest.raises(ParseError):
        p.parse_nvidia_smi_csv("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")


def test_nvidia_smi_vgpu_query_and_table() -> None:   # § 6.2, § 6.3
    q = ("GPU 00000000:01:00.0\n    Active vGPUs                          : 1\n"
         "    vGPU ID                               : 3251634190\n"
         "        VM Name                           : win10test,debug-threads=on\n"
         "GPU 00000000:02:00.0\n    Active vGPUs                          : 2\n")
    assert p.parse_nvidia_smi_vgpu(q) == 3
    table = ("+-----------------------------------------------------------------------------+\n"
             "| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14                 |\n"
             "|---------------------------------+------------------------------+------------+\n"
             "| GPU  Name                       | Bus-Id                       | GPU-Util   |\n"
             "|      vGPU ID     Name           | VM ID     VM Name            | vGPU-Util  |\n"
             "|=================================+==============================+============|\n"
             "|   0  NVIDIA CMP 40HX            | 00000000:01:00.0             |   1%       |\n"
             "|      3251634216  GRID RTX600... | c269...  windows10,debug-... |      0%    |\n"
             "+---------------------------------+------------------------------+------------+\n")
    assert p.parse_nvidia_smi_vgpu(table) == 1
    assert p.parse_nvidia_smi_vgpu("No supported devices in vGPU mode\n") == 0
    with pytest.raises(ParseError):
        p.parse_nvidia_smi_vgpu("Segmentation fault\n")
