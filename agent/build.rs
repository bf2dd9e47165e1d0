//! Builds agent-ebpf for the BPF target (nightly + bpf-linker, see xtask) so the agent can embed it.
fn main() -> anyhow::Result<()> {
    // aya-build relays the nested cargo's stderr as cargo warnings; keep its progress lines out of
    // every build's output (compiler diagnostics still come through).
    std::env::set_var("CARGO_TERM_QUIET", "true");
    let ebpf = aya_build::Package {
        name: "warden-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
