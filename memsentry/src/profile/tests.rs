use std::io::Read;

use prost::Message;

use super::pprof::{PProfile, to_message};
use super::*;

fn decode(profile: &Profile) -> PProfile {
    let mut gz = Vec::new();
    profile.encode_pprof(&mut gz).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    PProfile::decode(&raw[..]).unwrap()
}

/// A profile built by hand: two stacks sharing a leaf function.
fn constructed() -> Profile {
    let f = |name: &str| Function {
        name: name.into(),
        system_name: format!("_ZN{name}E").into(),
        file: "src/main.rs".into(),
    };
    let estimate = |objects: f64, bytes: f64, samples: u64| Estimate {
        objects,
        bytes,
        samples,
    };
    Profile {
        taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        sample_rate: 4096,
        unwinder: Unwinder::Dwarf,
        samples: vec![
            Sample {
                stack: 0,
                size: 64,
                alloc: estimate(130.4, 8345.6, 2),
                inuse: estimate(64.6, 4134.4, 1),
                oldest: Some(Duration::from_secs(3)),
            },
            Sample {
                stack: 1,
                size: 8192,
                alloc: estimate(3.0, 24576.0, 3),
                inuse: estimate(0.0, 0.0, 0),
                oldest: None,
            },
        ],
        stacks: vec![vec![0, 1], vec![0, 2]],
        locations: vec![
            Location {
                address: 0x1000,
                mapping: Some(0),
                lines: vec![(0, 10)],
            },
            Location {
                address: 0x2000,
                mapping: Some(0),
                // `inner` inlined into `main`.
                lines: vec![(1, 20), (2, 30)],
            },
            Location {
                address: 0x3000,
                mapping: None,
                lines: vec![],
            },
        ],
        functions: vec![f("leaf"), f("inner"), f("main")],
        mappings: vec![Mapping {
            start: 0x1000,
            limit: 0x3000,
            offset: 0,
            file: "/bin/demo".into(),
        }],
    }
}

#[test]
fn pprof_round_trip() {
    let profile = constructed();
    let message = decode(&profile);
    assert_eq!(message, to_message(&profile));
    let s = |i: i64| message.string_table[usize::try_from(i).unwrap()].as_str();
    assert_eq!(message.string_table[0], "");
    let types: Vec<_> = message
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ]
    );
    let period_type = message.period_type.as_ref().unwrap();
    assert_eq!(
        (s(period_type.r#type), s(period_type.unit)),
        ("space", "bytes")
    );
    assert_eq!(message.period, 4096);
    assert_eq!(s(message.default_sample_type), "inuse_space");
    assert_eq!(message.time_nanos, 1_000_000_000);
    assert_eq!(
        s(message.comment[0]),
        "memsentry heap profile; stacks walked by DWARF"
    );

    assert_eq!(message.sample.len(), 2);
    assert_eq!(message.sample[0].value, [130, 8346, 65, 4134]);
    assert_eq!(message.sample[0].location_id, [1, 2]);
    assert_eq!(message.sample[1].value, [3, 24576, 0, 0]);
    let label = &message.sample[1].label[0];
    assert_eq!(
        (s(label.key), label.num, s(label.num_unit)),
        ("bytes", 8192, "bytes")
    );

    assert_eq!(message.mapping.len(), 1);
    assert_eq!(s(message.mapping[0].filename), "/bin/demo");
    assert_eq!(message.location[2].mapping_id, 0, "outside every mapping");
    let inlined: Vec<_> = message.location[1]
        .line
        .iter()
        .map(|line| {
            let function = &message.function[usize::try_from(line.function_id - 1).unwrap()];
            (s(function.name), line.line)
        })
        .collect();
    assert_eq!(inlined, [("inner", 20), ("main", 30)]);
}

#[test]
fn frames_expand_inlined_functions() {
    let profile = constructed();
    let frames: Vec<_> = profile
        .frames(&profile.samples()[0])
        .map(|f| (f.function, f.line, f.address))
        .collect();
    assert_eq!(
        frames,
        [
            ("leaf", 10, 0x1000),
            ("inner", 20, 0x2000),
            ("main", 30, 0x2000)
        ]
    );
    let unknown: Vec<_> = profile.frames(&profile.samples()[1]).collect();
    assert_eq!(unknown[1].function, "");
    assert_eq!(unknown[1].address, 0x3000);
}

#[test]
fn samples_through_matches_whole_path_segments() {
    let profile = constructed();
    assert_eq!(profile.samples_through("inner").count(), 1);
    assert_eq!(profile.samples_through("main").count(), 1);
    assert_eq!(profile.samples_through("ner").count(), 0);
    assert_eq!(profile.samples_through("leaf").count(), 2);
}

#[test]
fn totals_sum_rows() {
    let (alloc, inuse) = constructed().totals();
    assert_eq!(alloc.samples, 5);
    assert!((alloc.bytes - 32921.6).abs() < 1e-9);
    assert_eq!(inuse.samples, 1);
}

#[test]
fn unwritable_path_is_an_error_naming_it() {
    let path = Path::new("/nonexistent-dir/memsentry/heap.pb.gz");
    let error = constructed().write_pprof(path).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("/nonexistent-dir/memsentry/heap.pb.gz"),
        "{text}"
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[inline(never)]
fn sampled_here_for_the_unit_test(addresses: &[usize], size: usize) {
    for &address in addresses {
        crate::sampler::record(address, size, 1, 0);
    }
}

/// The real table and real stacks (no global allocator needed: records are made
/// directly, for addresses nothing else uses).
#[test]
fn recorded_samples_show_up_symbolized() {
    let addresses = [0x7ead_0000_0010, 0x7ead_0000_0020, 0x7ead_0000_0030];
    sampled_here_for_the_unit_test(&addresses, 48);
    let profile = heap();
    let ours: Vec<&Sample> = profile
        .samples_through("sampled_here_for_the_unit_test")
        .collect();
    assert_eq!(ours.len(), 1, "one (stack, size) row");
    assert_eq!(ours[0].size, 48);
    assert_eq!(ours[0].inuse.samples, 3);
    assert_eq!(ours[0].inuse.bytes, 144.0);
    assert_eq!(ours[0].alloc.objects, 3.0);
    let leaf = profile.frames(ours[0]).next().unwrap();
    assert!(!leaf.function.starts_with("memsentry::sampler"), "{leaf:?}");
    assert!(leaf.file.ends_with(".rs"), "{leaf:?}");

    for address in addresses {
        assert!(crate::hot::sampler::maybe_sampled(address as *mut u8));
        assert!(crate::sampler::take(address).is_some());
        assert!(crate::sampler::take(address).is_none());
    }
    let profile = heap();
    let still: u64 = profile
        .samples_through("sampled_here_for_the_unit_test")
        .map(|s| s.inuse.samples)
        .sum();
    assert_eq!(still, 0);
}

#[test]
fn folded_lines_are_exact() {
    let profile = constructed();
    assert_eq!(
        profile.folded(SampleType::AllocSpace),
        "0x3000;leaf 24576\nmain;inner;leaf 8346\n"
    );
    assert_eq!(
        profile.folded(SampleType::AllocObjects),
        "0x3000;leaf 3\nmain;inner;leaf 130\n"
    );
    // The second stack has nothing in use: left out.
    assert_eq!(
        profile.folded(SampleType::InuseSpace),
        "main;inner;leaf 4134\n"
    );
    assert_eq!(
        profile.folded(SampleType::InuseObjects),
        "main;inner;leaf 65\n"
    );
}

#[test]
fn folded_names_never_split_a_frame() {
    let mut profile = constructed();
    profile.functions[1].name = "<[u8; 4] as demo::Fill>::fill".into();
    assert_eq!(
        profile.folded(SampleType::InuseSpace),
        "main;<[u8: 4] as demo::Fill>::fill;leaf 4134\n"
    );
}

#[test]
fn top_report_numbers_are_exact() {
    let top = constructed().top(SampleType::AllocSpace, 10);
    assert_eq!(top.total(), 8345.6 + 24576.0);
    let rows: Vec<(&str, f64, f64)> = top
        .rows()
        .iter()
        .map(|r| (r.function.as_str(), r.flat, r.cum))
        .collect();
    assert_eq!(
        rows,
        [
            ("leaf", 32921.6, 32921.6),
            ("0x3000", 0.0, 24576.0),
            ("inner", 0.0, 8345.6),
            ("main", 0.0, 8345.6),
        ]
    );
    let text = top.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "alloc_space: 32.2 KiB total");
    assert_eq!(
        lines[1],
        "      flat  flat%   sum%        cum   cum%  function"
    );
    assert_eq!(lines[2], "  32.2 KiB 100.0% 100.0%   32.2 KiB 100.0%  leaf");
    assert_eq!(
        lines[3],
        "       0 B   0.0% 100.0%   24.0 KiB  74.7%  0x3000"
    );
    assert_eq!(lines.len(), 6);

    let objects = constructed().top(SampleType::InuseObjects, 1);
    assert_eq!(objects.rows().len(), 1, "limited to one row");
    assert_eq!(objects.total(), 64.6, "the total covers every row");
    assert!(
        objects.to_string().contains("65 100.0% 100.0%"),
        "{objects}"
    );
}

#[test]
fn sample_types_parse_and_print() {
    for t in SampleType::ALL {
        assert_eq!(t.name().parse::<SampleType>(), Ok(t));
        assert_eq!(t.to_string(), t.name());
    }
    let error = "inuse".parse::<SampleType>().unwrap_err();
    assert!(error.to_string().contains("\"inuse\""), "{error}");
}
