//! Dispatch: check the input without trusting it, pick the driver, call it, check what it returned.

use std::ffi::CStr;

use coprocess_proto::wire;

use crate::driver::instance::{bad_output, bad_patch, DriverInstance, Output};
use crate::error::{
    Error, Result, COPROCESS_ERR_DISABLED, COPROCESS_ERR_INVALID_JSON,
    COPROCESS_ERR_INVALID_OBJECT, COPROCESS_ERR_INVALID_UTF8,
};
use crate::logging::Level;
use crate::message::MallocBuf;
use crate::runtime::Runtime;

/// Runs one hook: `driver` names the driver; `None` routes by `spec["APIID"]` to an API loaded with
/// `CoProcessLoadApi` (which runs its hook chain, see `crate::chain`) or, when no loaded API matches,
/// to the only driver loaded. Returns the malloc'd output, checked to be a well-formed
/// `coprocess.Object`.
///
/// Both checks are zero-allocation wire walks (`coprocess_proto::wire`), not prost decodes: they accept
/// exactly what a decode accepts at a fraction of its cost (see benches/dispatch.rs).
pub fn dispatch(rt: &Runtime, driver: Option<&str>, input: &[u8]) -> Result<MallocBuf> {
    if !rt.enabled() {
        return Err(Error::new(
            COPROCESS_ERR_DISABLED,
            "coprocess is disabled (enable_coprocess is false)",
        ));
    }
    // One walk checks the Object and reads what routing and the metrics label need.
    let routing = wire::check_object(input).map_err(|e| {
        Error::new(
            COPROCESS_ERR_INVALID_OBJECT,
            format!("input is not a well-formed coprocess.Object: {e}"),
        )
    })?;
    if driver.is_none() && !rt.apis.is_empty() {
        if let Some(api) = routing.api_id().and_then(|id| rt.apis.get(id)) {
            return crate::chain::dispatch_api(rt, &api, input, routing.hook_type());
        }
    }
    // A borrowed snapshot entry: no lock, no reference count touched.
    let instance = rt.registry.lookup(driver)?;
    let hook = crate::metrics::hook_type_label(routing.hook_type());
    crate::metrics::timed("", hook, instance.name(), || call_driver(&instance, input))
}

/// Calls one driver with an already validated Object and checks what it returns: the answer as a
/// whole Object.
pub(crate) fn call_driver(instance: &DriverInstance, input: &[u8]) -> Result<MallocBuf> {
    call_driver_answer(instance, input).map(|answer| answer.into_object(input))
}

/// A driver's answer to one hook, checked.
#[derive(Debug)]
pub(crate) enum DriverAnswer {
    /// A whole Object, and whether it starts with the input (`None`: the check did not compare them).
    Whole {
        object: MallocBuf,
        extends_input: Option<bool>,
    },
    /// Object fields that, appended to the input, form the answer (`CoProcessDriverDispatchPatch`).
    Patch(MallocBuf),
}

impl DriverAnswer {
    /// The answer as a whole Object: a patch is appended to a copy of `input` (the copy a driver
    /// answering with a whole Object makes itself).
    pub fn into_object(self, input: &[u8]) -> MallocBuf {
        match self {
            DriverAnswer::Whole { object, .. } => object,
            DriverAnswer::Patch(patch) => MallocBuf::concat(input, patch.as_slice()),
        }
    }

    /// The answer's bytes in two parts that, one after the other, are the whole Object: `input` and
    /// the patch, or the Object and nothing.
    pub fn parts<'a>(&'a self, input: &'a [u8]) -> [&'a [u8]; 2] {
        match self {
            DriverAnswer::Whole { object, .. } => [object.as_slice(), &[]],
            DriverAnswer::Patch(patch) => [input, patch.as_slice()],
        }
    }
}

/// [`call_driver`] without making the answer a whole Object: a patch stays a patch, and a whole
/// Object comes with what its check found about the input (so that a hook chain need not compare
/// them again).
pub(crate) fn call_driver_answer(instance: &DriverInstance, input: &[u8]) -> Result<DriverAnswer> {
    Ok(match instance.dispatch(input)? {
        Output::Whole(object) => {
            let extends_input = check_output(input, object.as_slice())
                .map_err(|e| bad_output(instance.name(), e))?;
            DriverAnswer::Whole {
                object,
                extends_input,
            }
        }
        Output::Patch(patch) => {
            check_patch(input.len(), patch.as_slice())
                .map_err(|e| bad_patch(instance.name(), e))?;
            DriverAnswer::Patch(patch)
        }
    })
}

/// Checks a patch of the already-validated input (`input_len` bytes). Protobuf parses a concatenation as a merge, and a
/// concatenation of well-formed Objects is a well-formed Object, so `input ‖ patch` is well-formed
/// exactly when the patch is, and fits a message when an int can count its length.
fn check_patch(input_len: usize, patch: &[u8]) -> Result<(), String> {
    let merged = input_len.saturating_add(patch.len());
    if i32::try_from(merged).is_err() {
        return Err(format!(
            "{} bytes that make the answer {merged} bytes long, more than a message can hold",
            patch.len()
        ));
    }
    wire::validate_object(patch).map_err(|e| e.to_string())
}

/// Checks a driver's output against the already-validated input. A concatenation of two well-formed
/// Objects is a well-formed Object (protobuf merges them), so when the output starts with the input,
/// as it does for pass-through drivers and for patches (`ObjectPatch`: changes appended to the input),
/// only the appended bytes need walking. Comparing bytes is cheaper than walking them for string-heavy
/// Objects, but not for large opaque bodies, which the walk skips without reading: the comparison is
/// only tried when the input is small enough for it to pay off. Gives whether the output starts with
/// the input, when they were compared.
fn check_output(input: &[u8], output: &[u8]) -> Result<Option<bool>, wire::WireError> {
    const PREFIX_CHECK_MAX: usize = 16 * 1024;
    if input.len() > PREFIX_CHECK_MAX {
        return wire::validate_object(output).map(|()| None);
    }
    if output.starts_with(input) {
        return wire::validate_object(&output[input.len()..]).map(|()| Some(true));
    }
    wire::validate_object(output).map(|()| Some(false))
}

/// Delivers an event (JSON text) to every loaded driver. Text that is not JSON is refused: drivers are
/// promised JSON.
pub fn dispatch_event(rt: &Runtime, event_json: &CStr) -> Result<()> {
    let text = event_json.to_str().map_err(|_| {
        Error::new(
            COPROCESS_ERR_INVALID_UTF8,
            "DispatchEvent: event is not valid UTF-8",
        )
    })?;
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(Error::new(
            COPROCESS_ERR_INVALID_JSON,
            format!("DispatchEvent: event is not valid JSON: {e}"),
        ));
    }
    for driver in rt.registry.all() {
        rt.logs.log(
            Level::Debug,
            format_args!("delivering event to driver '{}'", driver.name()),
        );
        driver.dispatch_event(event_json);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_output, check_patch};

    #[test]
    fn output_extending_the_input_is_checked_by_its_tail() {
        let input = b"\x12\x03abc"; // hook_name = "abc"
        assert_eq!(check_output(input, b"\x12\x03abc"), Ok(Some(true)));
        assert_eq!(check_output(input, b"\x12\x03abc\x12\x01z"), Ok(Some(true)));
        assert_eq!(check_output(input, b"\x12\x01z"), Ok(Some(false)));
        assert!(
            check_output(input, b"\x12\x03abc\x12\x05z").is_err(),
            "a truncated tail"
        );
        assert!(
            check_output(input, b"\x12\x03abc\xff").is_err(),
            "a garbage tail"
        );
        assert!(
            check_output(input, b"\x12\x02\xc3\x28").is_err(),
            "not a prefix: full walk"
        );
    }

    /// A patch is walked as Object fields of its own; the input is not read again.
    #[test]
    fn a_patch_is_checked_as_object_fields() {
        let input = b"\x12\x03abc".len();
        assert_eq!(check_patch(input, b""), Ok(()), "an empty patch");
        assert_eq!(check_patch(input, b"\x12\x01z"), Ok(()));
        assert!(check_patch(input, b"\x12\x05z").is_err(), "truncated");
        assert!(check_patch(input, b"\xff\xff\xff\xff").is_err(), "garbage");
        assert!(
            check_patch(input, b"\x12\x02\xc3\x28").is_err(),
            "not UTF-8"
        );
        let max = i32::MAX as usize;
        assert_eq!(check_patch(max, b""), Ok(()), "the largest answer");
        let e = check_patch(max, b"\x12\x01z").unwrap_err();
        assert!(e.contains("more than a message can hold"), "{e}");
        assert!(
            check_patch(usize::MAX, b"\x12\x01z").is_err(),
            "no overflow"
        );
    }
}
