//! Attach each program at the cgroup2 root, or give it the link a previous run pinned.
use std::{fs::File, os::fd::AsFd, path::Path};

use aya::{
    programs::{
        links::FdLink, CgroupAttachMode, CgroupSock, CgroupSockAddr, ProgramError, SockOps,
    },
    Ebpf,
};
use warden_ebpf::programs;

use super::{
    pins::{self, HeldLink, PinDir},
    EbpfLoadError,
};

/// See the module comment of `ebpf`: with bpf links (kernel ≥ 5.7) this still allows multiple
/// programs.
const LINK_ATTACH_MODE: CgroupAttachMode = CgroupAttachMode::Single;

/// Loads `name` and attaches it at `root`, or gives it the link a previous run pinned. Returns
/// the program's id, its link and whether the link was re-adopted.
pub(super) fn attach_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    root: &File,
    pins: Option<&PinDir>,
) -> Result<(u32, HeldLink, bool), EbpfLoadError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(EbpfLoadError::MissingProgram(name))?;
    let program_error = |source| EbpfLoadError::Program { name, source };
    if name == programs::SOCK_OPS {
        let program: &mut SockOps = program.try_into().map_err(program_error)?;
        program.load().map_err(program_error)?;
        link_program(name, program, root, pins)
    } else if name == programs::SOCK_CREATE || name == programs::SOCK_RELEASE {
        let program: &mut CgroupSock = program.try_into().map_err(program_error)?;
        program.load().map_err(program_error)?;
        link_program(name, program, root, pins)
    } else {
        let program: &mut CgroupSockAddr = program.try_into().map_err(program_error)?;
        program.load().map_err(program_error)?;
        link_program(name, program, root, pins)
    }
}

/// The program types Warden attaches to cgroups, as far as linking them goes.
trait CgroupProgram {
    fn program_id(&self) -> Result<u32, ProgramError>;
    fn program_fd(&self) -> Result<aya::programs::ProgramFd, ProgramError>;
    fn attach_link(&mut self, root: &File, name: &'static str) -> Result<FdLink, EbpfLoadError>;
}

macro_rules! cgroup_program {
    ($program_type:ty) => {
        impl CgroupProgram for $program_type {
            fn program_id(&self) -> Result<u32, ProgramError> {
                Ok(self.info()?.id())
            }

            fn program_fd(&self) -> Result<aya::programs::ProgramFd, ProgramError> {
                Ok(self.fd()?.try_clone()?)
            }

            fn attach_link(
                &mut self,
                root: &File,
                name: &'static str,
            ) -> Result<FdLink, EbpfLoadError> {
                let program_error = |source| EbpfLoadError::Program { name, source };
                let link_id = self.attach(root, LINK_ATTACH_MODE).map_err(program_error)?;
                let link = self.take_link(link_id).map_err(program_error)?;
                FdLink::try_from(link).map_err(|source| EbpfLoadError::Link { name, source })
            }
        }
    };
}
cgroup_program!(SockOps);
cgroup_program!(CgroupSockAddr);
cgroup_program!(CgroupSock);

fn link_program(
    name: &'static str,
    program: &mut impl CgroupProgram,
    root: &File,
    pins: Option<&PinDir>,
) -> Result<(u32, HeldLink, bool), EbpfLoadError> {
    let program_error = |source| EbpfLoadError::Program { name, source };
    let id = program.program_id().map_err(program_error)?;
    let Some(pins) = pins else {
        let link = program.attach_link(root, name)?;
        return Ok((id, HeldLink::Owned(link), false));
    };
    let program_fd = program.program_fd().map_err(program_error)?;
    let (link, adopted) =
        pins.adopt_or_attach(name, program_fd.as_fd(), || program.attach_link(root, name))?;
    Ok((id, HeldLink::Pinned(link), adopted))
}

/// Fail open after a closed-mode run: the links stay attached only while this process holds
/// them, and nothing is left pinned (the maps live on through the programs and our handles).
pub(super) fn release_pins(links: Vec<HeldLink>, pin_dir: &Path) -> Vec<HeldLink> {
    let released = links
        .into_iter()
        .filter_map(|link| match link {
            HeldLink::Pinned(pinned) => match pins::unpin(pinned) {
                Ok(owned) => Some(owned),
                Err(error) => {
                    // The pin is still there, so the program stays attached after exit.
                    tracing::error!(%error, "cannot unpin a link: it stays attached after Warden exits");
                    None
                }
            },
            owned => Some(owned),
        })
        .collect();
    if let Err(error) = PinDir::remove(pin_dir) {
        tracing::error!(%error, path = %pin_dir.display(), "removing the pins of a previous run");
    }
    tracing::info!(path = %pin_dir.display(), "fail_mode = \"open\": pins removed; the programs detach when Warden exits");
    released
}
