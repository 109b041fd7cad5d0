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
        symbolization: Symbolization::InProcess,
        base: None,
        window: None,
        samples: vec![
            Sample {
                stack: 0,
                size: 64,
                alloc: estimate(130.4, 8345.6, 2),
                inuse: estimate(64.6, 4134.4, 1),
                oldest: Some(Duration::from_secs(3)),
                base_inuse: None,
                task: None,
                median_lifetime: None,
            },
            Sample {
                stack: 1,
                size: 8192,
                alloc: estimate(3.0, 24576.0, 3),
                inuse: estimate(0.0, 0.0, 0),
                oldest: None,
                base_inuse: None,
                task: None,
                median_lifetime: None,
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
            build_id: "0123abcd".into(),
        }],
    }
}

#[test]
fn pprof_round_trip() {
    let profile = constructed();
    let message = decode(&profile);
    assert_eq!(message, to_message(&profile, None));
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
    let allocs = to_message(&profile, Some(SampleType::AllocSpace));
    assert_eq!(
        allocs.string_table[usize::try_from(allocs.default_sample_type).unwrap()],
        "alloc_space"
    );
    // Not among a heap profile's types: the usual default.
    let change = to_message(&profile, Some(SampleType::InuseSpaceChange));
    assert_eq!(
        change.string_table[usize::try_from(change.default_sample_type).unwrap()],
        "inuse_space"
    );
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
        crate::sampler::record(address, size, 1, 0, 0);
    }
    // No tail call: this frame stays on the stack of the last record, optimised or not.
    std::hint::black_box(size);
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
    // One row per call site: one, or more where an optimised build unrolled the loop.
    assert!(!ours.is_empty() && ours.iter().all(|s| s.size == 48));
    let sum = |f: fn(&Sample) -> f64| ours.iter().map(|s| f(s)).sum::<f64>();
    assert_eq!(sum(|s| s.inuse.samples as f64), 3.0);
    assert_eq!(sum(|s| s.inuse.bytes), 144.0);
    assert_eq!(sum(|s| s.alloc.objects), 3.0);
    // The sampler's and the stack walk's own frames are trimmed.
    let leaf = profile.frames(ours[0]).next().unwrap();
    assert!(
        leaf.function.ends_with("sampled_here_for_the_unit_test"),
        "{leaf:?}"
    );

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

/// An earlier profile of the same program as [`constructed`]: the first row smaller, the
/// second absent, and a row the later profile no longer has.
fn constructed_base() -> Profile {
    let mut base = constructed();
    base.taken_at = SystemTime::UNIX_EPOCH;
    base.samples[0].alloc = Estimate {
        objects: 30.4,
        bytes: 1945.6,
        samples: 1,
    };
    base.samples[0].inuse = Estimate {
        objects: 20.0,
        bytes: 1280.0,
        samples: 1,
    };
    base.samples[1] = Sample {
        stack: 2,
        size: 32,
        alloc: Estimate {
            objects: 10.0,
            bytes: 320.0,
            samples: 1,
        },
        inuse: Estimate {
            objects: 5.0,
            bytes: 160.0,
            samples: 1,
        },
        oldest: Some(Duration::from_secs(9)),
        base_inuse: None,
        task: None,
        median_lifetime: None,
    };
    // Functions in another order than the later profile's, and one of its own.
    base.functions.rotate_left(1);
    base.functions.push(Function {
        name: "gone".into(),
        system_name: "_ZNgoneE".into(),
        file: "src/gone.rs".into(),
    });
    base.locations[0].lines = vec![(2, 10)];
    base.locations[1].lines = vec![(0, 20), (1, 30)];
    base.locations.push(Location {
        address: 0x4000,
        mapping: Some(0),
        lines: vec![(3, 40)],
    });
    base.stacks.push(vec![0, 3]);
    base
}

#[test]
fn diff_subtracts_alloc_and_keeps_inuse() {
    let diff = constructed().diff(&constructed_base()).unwrap();
    assert!(diff.is_diff());
    assert_eq!(diff.base_taken_at(), Some(SystemTime::UNIX_EPOCH));
    /// A row: its functions, leaf first, size, alloc, inuse and base inuse.
    type Row<'a> = (Vec<&'a str>, u64, Estimate, Estimate, Option<Estimate>);
    let rows: Vec<Row<'_>> = diff
        .samples()
        .iter()
        .map(|s| {
            let names = diff.frames(s).map(|f| f.function).collect();
            (names, s.size, s.alloc, s.inuse, s.base_inuse)
        })
        .collect();
    let e = |objects: f64, bytes: f64, samples: u64| Estimate {
        objects,
        bytes,
        samples,
    };
    let close = |a: Estimate, b: Estimate| {
        (a.objects - b.objects).abs() < 1e-9
            && (a.bytes - b.bytes).abs() < 1e-9
            && a.samples == b.samples
    };
    // Largest growth first.
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].0, ["leaf", "inner", "main"]);
    assert_eq!(rows[0].1, 64);
    assert!(close(rows[0].2, e(100.0, 6400.0, 1)), "{:?}", rows[0]);
    assert!(
        close(rows[0].3, e(64.6, 4134.4, 1)),
        "in use is the later profile's"
    );
    assert!(close(rows[0].4.unwrap(), e(20.0, 1280.0, 1)));
    // Only in the later profile: all of it is new.
    assert_eq!(rows[1].0, ["leaf", ""]);
    assert!(close(rows[1].2, e(3.0, 24576.0, 3)));
    assert_eq!(rows[1].4, Some(Estimate::default()));
    // Only in the base: freed since, and not allocated again.
    assert_eq!(rows[2].0, ["leaf", "gone"]);
    assert!(close(rows[2].2, e(-10.0, -320.0, 0)));
    assert!(close(rows[2].3, Estimate::default()));
    assert!(close(rows[2].4.unwrap(), e(5.0, 160.0, 1)));
    assert_eq!(
        SampleType::InuseSpaceChange.value(&diff.samples()[2]),
        -160.0
    );
}

#[test]
fn diff_refuses_mismatched_rates_unless_rescaled() {
    let mut base = constructed_base();
    base.sample_rate = 8192;
    let error = constructed().diff(&base).unwrap_err();
    assert_eq!(
        error,
        DiffError::RateMismatch {
            rate: 4096,
            base_rate: 8192
        }
    );
    assert!(error.to_string().contains("diff_rescaled"), "{error}");
    let diff = constructed().diff_rescaled(&base).unwrap();
    assert_eq!(diff.sample_rate(), 4096);
    assert_eq!(diff.samples().len(), 3);
    assert_eq!(
        diff.diff(&constructed()).unwrap_err(),
        DiffError::AlreadyDiff
    );
    assert_eq!(
        constructed().diff(&diff).unwrap_err(),
        DiffError::AlreadyDiff
    );
}

#[test]
fn diff_views_show_changes_as_changes() {
    let diff = constructed().diff(&constructed_base()).unwrap();
    assert_eq!(
        diff.folded(SampleType::InuseSpaceChange),
        "gone;leaf 160 0\nmain;inner;leaf 1280 4134\n"
    );
    assert_eq!(
        diff.folded(SampleType::AllocSpace),
        "0x3000;leaf 24576\ngone;leaf -320\nmain;inner;leaf 6400\n"
    );
    assert_eq!(
        diff.folded(SampleType::InuseSpace),
        "main;inner;leaf 4134\n",
        "in use now, never negative"
    );

    let top = diff.top(SampleType::InuseSpaceChange, 10);
    let rows: Vec<(&str, f64, f64)> = top
        .rows()
        .iter()
        .map(|r| (r.function.as_str(), r.flat, r.cum))
        .collect();
    let expected = [
        ("leaf", 2694.4, 2694.4),
        ("inner", 0.0, 2854.4),
        ("main", 0.0, 2854.4),
        ("gone", 0.0, -160.0),
    ];
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(expected) {
        assert_eq!(row.0, want.0);
        assert!((row.1 - want.1).abs() < 1e-9 && (row.2 - want.2).abs() < 1e-9);
    }
    let text = top.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "inuse_space_change: +2.6 KiB total change since the base (taken 1.0 s earlier); \
         percentages of the 4.0 KiB in use now"
    );
    assert_eq!(lines[2], "  +2.6 KiB  65.2%  65.2%   +2.6 KiB  65.2%  leaf");
    assert_eq!(lines[5], "       0 B   0.0%  65.2%     -160 B  -3.9%  gone");

    let inuse = diff.top(SampleType::InuseSpace, 10).to_string();
    assert!(
        inuse.starts_with(
            "inuse_space: 4.0 KiB total in use now (this is a diff: inuse_space_change shows the change)"
        ),
        "{inuse}"
    );
    let alloc = diff.top(SampleType::AllocObjects, 10).to_string();
    assert!(
        alloc.starts_with("alloc_objects: 93 total allocated since the base (taken 1.0 s earlier)"),
        "{alloc}"
    );
}

#[test]
fn diff_pprof_has_changes_and_negative_values() {
    let diff = constructed().diff(&constructed_base()).unwrap();
    let message = decode(&diff);
    let s = |i: i64| message.string_table[usize::try_from(i).unwrap()].as_str();
    let types: Vec<&str> = message.sample_type.iter().map(|t| s(t.r#type)).collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space",
            "inuse_objects_change",
            "inuse_space_change"
        ]
    );
    assert_eq!(s(message.default_sample_type), "inuse_space_change");
    assert_eq!(message.sample[0].value, [100, 6400, 65, 4134, 45, 2854]);
    assert_eq!(message.sample[2].value, [-10, -320, 0, 0, -5, -160]);
    assert!(s(message.comment[1]).starts_with("diff against a base taken 1.0 s earlier"));
    // The row only the base had keeps its function, imported into the diff.
    let leaf_caller = message.sample[2].location_id[1];
    let location = &message.location[usize::try_from(leaf_caller - 1).unwrap()];
    let function = &message.function[usize::try_from(location.line[0].function_id - 1).unwrap()];
    assert_eq!(
        (s(function.name), s(function.filename)),
        ("gone", "src/gone.rs")
    );
    assert_eq!(location.address, 0x3fff, "the call instruction's");
}

/// Parses `svg` strictly (inferno's SVG declares the SVG 1.1 DTD).
#[cfg(feature = "flamegraph")]
fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(svg, options).expect("well-formed XML")
}

/// The flame graph's frames: the title (name, value, share) of every `<g>` that has one.
#[cfg(feature = "flamegraph")]
fn flamegraph_frames(profile: &Profile, sample_type: SampleType) -> Vec<String> {
    let mut svg = Vec::new();
    profile.flamegraph(sample_type, &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    let document = parse_svg(&svg);
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let mut frames: Vec<String> = document
        .descendants()
        .filter(|n| n.has_tag_name("g"))
        .filter_map(|g| g.children().find(|c| c.has_tag_name("title")))
        .filter_map(|title| title.text().map(str::to_owned))
        .collect();
    frames.sort();
    frames
}

#[cfg(feature = "flamegraph")]
#[test]
fn flamegraph_has_one_frame_per_stack_element() {
    let frames = flamegraph_frames(&constructed(), SampleType::AllocSpace);
    // Stacks `0x3000;leaf 24576` and `main;inner;leaf 8346`: a root, then one frame
    // per distinct prefix.
    let names: Vec<&str> = frames
        .iter()
        .map(|f| f.split(" (").next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["0x3000", "all", "inner", "leaf", "leaf", "main"],
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.starts_with("all (32,922 bytes")),
        "{frames:?}"
    );

    let diff = constructed().diff(&constructed_base()).unwrap();
    let frames = flamegraph_frames(&diff, SampleType::InuseSpaceChange);
    assert_eq!(
        frames.len(),
        4,
        "all, main, inner, leaf (gone is 0 now): {frames:?}"
    );

    let mut svg = Vec::new();
    Profile::empty(SystemTime::UNIX_EPOCH, 1)
        .flamegraph(SampleType::InuseSpace, &mut svg)
        .unwrap();
    let svg = String::from_utf8(svg).unwrap();
    parse_svg(&svg);
    assert!(svg.contains("no samples"), "{svg}");
}

#[test]
fn pprof_mappings_carry_build_ids_and_offline_profiles_ask_for_symbolization() {
    let message = decode(&constructed());
    let s = |m: &PProfile, i: i64| m.string_table[usize::try_from(i).unwrap()].clone();
    assert_eq!(s(&message, message.mapping[0].build_id), "0123abcd");
    assert!(message.mapping[0].has_functions && message.mapping[0].has_line_numbers);
    assert_eq!(message.drop_frames, 0);

    let mut offline = constructed();
    offline.symbolization = Symbolization::Offline;
    let message = decode(&offline);
    assert!(!message.mapping[0].has_functions && !message.mapping[0].has_line_numbers);
    assert_eq!(
        s(&message, message.drop_frames),
        symbolize::allocator_frames_regex()
    );
}

#[inline(never)]
fn sampled_for_the_offline_test(addresses: &[usize]) {
    for &address in addresses {
        crate::sampler::record(address, 80, 1, 0, 0);
    }
}

#[test]
fn offline_profiles_keep_addresses_and_the_binary() {
    let addresses = [0x7eae_0000_0010, 0x7eae_0000_0020];
    sampled_for_the_offline_test(&addresses);
    let profile = heap_with(Symbolization::Offline);
    assert_eq!(profile.symbolization(), Symbolization::Offline);
    let ours: Vec<&Sample> = profile.samples().iter().filter(|s| s.size == 80).collect();
    assert!(!ours.is_empty());
    for sample in ours {
        assert!(
            profile
                .frames(sample)
                .all(|f| f.function.is_empty() && f.address != 0)
        );
    }
    assert!(profile.locations.iter().all(|l| l.lines.is_empty()));
    assert!(
        !profile.mappings[0].build_id.is_empty(),
        "the test binary has a build ID"
    );
    for address in addresses {
        crate::sampler::take(address);
    }
}

#[test]
fn samples_carry_their_task_as_a_pprof_label_and_filter_by_it() {
    let mut profile = constructed();
    profile.samples[0].task = Some("checkout");
    let message = decode(&profile);
    let s = |i: i64| message.string_table[usize::try_from(i).unwrap()].as_str();
    let labels: Vec<(&str, &str)> = message.sample[0]
        .label
        .iter()
        .filter(|l| l.str != 0)
        .map(|l| (s(l.key), s(l.str)))
        .collect();
    assert_eq!(labels, [("task", "checkout")]);
    assert_eq!(
        message.sample[1].label.len(),
        1,
        "no task: only the bytes label"
    );
    let mine = profile.filter_task("checkout");
    assert_eq!(mine.samples().len(), 1);
    assert_eq!(
        mine.folded(SampleType::AllocSpace),
        "main;inner;leaf 8346\n"
    );
    assert_eq!(profile.tasks(), ["checkout"]);
    assert!(profile.filter_task("other").samples().is_empty());
}
