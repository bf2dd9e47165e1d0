//! Builds agent-ebpf for the BPF target (nightly + bpf-linker, see xtask) so main can embed it.
fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "warden-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
