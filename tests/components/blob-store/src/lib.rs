//! `wasi:blobstore` (blobstore, container, types) served by a component rather than by the host:
//! the provider side of the `blob` guest, over a volume mounted at `/data`. Each container is a
//! directory and each object a file, both named by the hex of their names (so any name is a
//! valid file name and none can reach outside the volume).
//!
//! Object data travels as `wasi:io` streams, which only the host can make: an outgoing value's
//! body is the write stream of a file set aside in the volume (renamed into place by
//! `write-data`), an incoming value's async body the read stream of the object's file.
use std::cell::Cell;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use exports::wasi::blobstore::container::{self, StreamObjectNames};
use exports::wasi::blobstore::types::{
    self, ContainerMetadata, Error, IncomingValue, InputStream, ObjectId, ObjectMetadata,
    OutgoingValue, OutputStream,
};
use exports::wasi::blobstore::{blobstore, container::Container as ContainerHandle};
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/blobstore-provider", generate_all });

const VOLUME: &str = "/data";

struct Provider;

fn hex(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(file: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..file.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(file.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn io(error: impl std::fmt::Display) -> Error {
    error.to_string()
}

/// The same rule as the host's built-in blobstore, so a guest sees the same answers from both.
fn checked(name: &str) -> Result<&str, Error> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if bad {
        Err(format!(
            "invalid name `{name}`: names are relative, without `.` or `..` segments"
        ))
    } else {
        Ok(name)
    }
}

fn volume() -> Result<&'static Path, Error> {
    let root = Path::new(VOLUME);
    if root.is_dir() {
        Ok(root)
    } else {
        Err(format!(
            "no volume mounted at `{VOLUME}`: this provider keeps objects there"
        ))
    }
}

fn container_dir(name: &str) -> Result<PathBuf, Error> {
    Ok(volume()?.join(hex(checked(name)?)))
}

fn seconds(time: std::io::Result<SystemTime>) -> u64 {
    time.ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The volume's directory descriptor, for what `std::fs` cannot do: make streams.
fn volume_descriptor() -> Result<Descriptor, Error> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find_map(|(dir, path)| (path == VOLUME).then_some(dir))
        .ok_or_else(|| format!("no volume mounted at `{VOLUME}`"))
}

/// A file of the volume, relative to it, opened through its descriptor.
fn open(relative: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, Error> {
    volume_descriptor()?
        .open_at(PathFlags::empty(), relative, open, flags)
        .map_err(|code| format!("opening `{relative}`: {code:?}"))
}

/// An open container: its name and directory.
pub struct Container {
    name: String,
    dir: PathBuf,
}

impl Container {
    fn object(&self, name: &str) -> Result<PathBuf, Error> {
        Ok(self.dir.join(hex(checked(name)?)))
    }

    fn existing(&self, name: &str) -> Result<PathBuf, Error> {
        let file = self.object(name)?;
        if file.is_file() {
            Ok(file)
        } else {
            Err(format!("no object `{name}` in container `{}`", self.name))
        }
    }

    fn names(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|entry| unhex(entry.ok()?.file_name().to_str()?))
            .collect();
        names.sort();
        Ok(names)
    }

    fn open(name: String) -> Result<Self, Error> {
        let dir = container_dir(&name)?;
        if dir.is_dir() {
            Ok(Self { name, dir })
        } else {
            Err(format!("no container `{name}`"))
        }
    }
}

impl container::GuestContainer for Container {
    fn name(&self) -> Result<String, Error> {
        Ok(self.name.clone())
    }

    fn info(&self) -> Result<ContainerMetadata, Error> {
        let meta = fs::metadata(&self.dir).map_err(io)?;
        Ok(ContainerMetadata {
            name: self.name.clone(),
            created_at: seconds(meta.created().or(meta.modified())),
        })
    }

    fn get_data(&self, name: String, start: u64, end: u64) -> Result<IncomingValue, Error> {
        let file = self.existing(&name)?;
        let size = fs::metadata(&file).map_err(io)?.len();
        let start = start.min(size);
        let len = end.saturating_add(1).min(size).saturating_sub(start);
        let relative = file.strip_prefix(VOLUME).map_err(io)?;
        Ok(IncomingValue::new(Incoming {
            relative: relative.to_string_lossy().into_owned(),
            start,
            len,
            whole: start == 0 && len == size,
        }))
    }

    fn write_data(&self, name: String, data: types::OutgoingValueBorrow<'_>) -> Result<(), Error> {
        let target = self.object(&name)?;
        let outgoing: &Outgoing = data.get();
        let aside = volume()?.join(&outgoing.aside);
        if !aside.exists() {
            fs::write(&aside, b"").map_err(io)?;
        }
        fs::rename(&aside, target).map_err(io)
    }

    fn list_objects(&self) -> Result<StreamObjectNames, Error> {
        Ok(StreamObjectNames::new(Names {
            names: self.names()?,
            next: Cell::new(0),
        }))
    }

    fn delete_object(&self, name: String) -> Result<(), Error> {
        match fs::remove_file(self.object(&name)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    fn delete_objects(&self, names: Vec<String>) -> Result<(), Error> {
        names
            .into_iter()
            .try_for_each(|name| self.delete_object(name))
    }

    fn has_object(&self, name: String) -> Result<bool, Error> {
        Ok(self.object(&name)?.is_file())
    }

    fn object_info(&self, name: String) -> Result<ObjectMetadata, Error> {
        let meta = fs::metadata(self.existing(&name)?).map_err(io)?;
        Ok(ObjectMetadata {
            name,
            container: self.name.clone(),
            created_at: seconds(meta.created().or(meta.modified())),
            size: meta.len(),
        })
    }

    fn clear(&self) -> Result<(), Error> {
        self.names()?
            .into_iter()
            .try_for_each(|name| self.delete_object(name))
    }
}

/// A listing of a container's objects, read in pages.
pub struct Names {
    names: Vec<String>,
    next: Cell<usize>,
}

impl container::GuestStreamObjectNames for Names {
    fn read_stream_object_names(&self, len: u64) -> Result<(Vec<String>, bool), Error> {
        let start = self.next.get();
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(self.names.len());
        self.next.set(end);
        Ok((self.names[start..end].to_vec(), end == self.names.len()))
    }

    fn skip_stream_object_names(&self, num: u64) -> Result<(u64, bool), Error> {
        let (skipped, done) = self.read_stream_object_names(num)?;
        Ok((skipped.len() as u64, done))
    }
}

impl container::Guest for Provider {
    type Container = Container;
    type StreamObjectNames = Names;
}

/// A value being written: its body goes to a file set aside in the volume until `write-data`
/// renames it into place; dropped unwritten, the file goes too.
pub struct Outgoing {
    aside: String,
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        // Already renamed into place when written; otherwise the leftover is garbage.
        let _ = fs::remove_file(Path::new(VOLUME).join(&self.aside));
    }
}

impl types::GuestOutgoingValue for Outgoing {
    fn new_outgoing_value() -> OutgoingValue {
        let nonce = wasip2::random::random::get_random_u64();
        OutgoingValue::new(Outgoing {
            aside: format!(".outgoing-{nonce:016x}"),
        })
    }

    fn outgoing_value_write_body(&self) -> Result<OutputStream, ()> {
        let file = open(
            &self.aside,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .map_err(drop)?;
        let body = file.write_via_stream(0).map_err(drop)?;
        // The host serves every 0.2.x `wasi:io` with one resource type, so the stream the
        // filesystem import (`wasi:io@0.2.12`) made is valid as blobstore's `@0.2.1` one.
        Ok(unsafe { OutputStream::from_handle(body.take_handle()) })
    }

    fn finish(this: OutgoingValue) -> Result<(), Error> {
        drop(this);
        Ok(())
    }
}

/// A range of an object, read when it is consumed.
pub struct Incoming {
    relative: String,
    start: u64,
    len: u64,
    whole: bool,
}

impl types::GuestIncomingValue for Incoming {
    fn incoming_value_consume_sync(this: IncomingValue) -> Result<Vec<u8>, Error> {
        let this: Incoming = this.into_inner();
        let mut file = fs::File::open(Path::new(VOLUME).join(&this.relative)).map_err(io)?;
        file.seek(SeekFrom::Start(this.start)).map_err(io)?;
        let mut data = Vec::with_capacity(usize::try_from(this.len).map_err(io)?);
        file.take(this.len).read_to_end(&mut data).map_err(io)?;
        Ok(data)
    }

    fn incoming_value_consume_async(this: IncomingValue) -> Result<InputStream, Error> {
        let this: Incoming = this.into_inner();
        // A file's read stream runs to its end: a part of it is read with `consume-sync`.
        if !this.whole {
            return Err("a part of an object is read with `incoming-value-consume-sync`".into());
        }
        let file = open(&this.relative, OpenFlags::empty(), DescriptorFlags::READ)?;
        let body = file
            .read_via_stream(this.start)
            .map_err(|code| format!("reading `{}`: {code:?}", this.relative))?;
        // See `outgoing_value_write_body`.
        Ok(unsafe { InputStream::from_handle(body.take_handle()) })
    }

    fn size(&self) -> u64 {
        self.len
    }
}

impl types::Guest for Provider {
    type OutgoingValue = Outgoing;
    type IncomingValue = Incoming;
}

impl blobstore::Guest for Provider {
    fn create_container(name: String) -> Result<ContainerHandle, Error> {
        let dir = container_dir(&name)?;
        if dir.exists() {
            return Err(format!("container `{name}` already exists"));
        }
        fs::create_dir(&dir).map_err(io)?;
        Ok(ContainerHandle::new(Container { name, dir }))
    }

    fn get_container(name: String) -> Result<ContainerHandle, Error> {
        Container::open(name).map(ContainerHandle::new)
    }

    fn delete_container(name: String) -> Result<(), Error> {
        let dir = container_dir(&name)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("no container `{name}`"))
            }
            other => other.map_err(io),
        }
    }

    fn container_exists(name: String) -> Result<bool, Error> {
        Ok(container_dir(&name)?.is_dir())
    }

    fn copy_object(src: ObjectId, dest: ObjectId) -> Result<(), Error> {
        let from = Container::open(src.container)?.existing(&src.object)?;
        let to = Container::open(dest.container)?.object(&dest.object)?;
        fs::copy(from, to).map(drop).map_err(io)
    }

    fn move_object(src: ObjectId, dest: ObjectId) -> Result<(), Error> {
        let from = Container::open(src.container)?.existing(&src.object)?;
        let to = Container::open(dest.container)?.object(&dest.object)?;
        fs::rename(from, to).map_err(io)
    }
}

export!(Provider);
