//! SVG flame graphs, rendered in-process by `inferno` (the `flamegraph` feature).

use std::io;
use std::path::Path;

use inferno::flamegraph::color::{BasicPalette, Palette};
use inferno::flamegraph::{self, Options};

use super::{Profile, ProfileError, SampleType};
use crate::Bytes;

impl Profile {
    /// Renders the profile as an SVG flame graph of `sample_type` into `writer`: one box
    /// per function on a stack, as wide as its value, callers below callees. The SVG
    /// is interactive in a browser: click a frame to zoom into it, press Ctrl-F to
    /// search (matches are highlighted and their share shown).
    ///
    /// For a change type ([`SampleType::is_change`]) the graph is *differential*: widths
    /// are what is in use now, colours how each stack changed since the diff's base
    /// (red grew, blue shrank). Stacks with a negative value (in a diff, sites that
    /// allocated less than before) cannot be drawn as widths and are left out of the
    /// other types' graphs; the subtitle says so.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// use memsentry::profile::{self, SampleType};
    /// let mut svg = Vec::new();
    /// profile::heap().flamegraph(SampleType::AllocSpace, &mut svg)?;
    /// assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Whatever `writer` returns.
    pub fn flamegraph<W: io::Write>(
        &self,
        sample_type: SampleType,
        mut writer: W,
    ) -> io::Result<()> {
        let rows = self.folded_rows(sample_type);
        let negative = rows.iter().filter(|row| row.after < 0.0).count();
        let lines: Vec<String> = rows
            .iter()
            .filter(|row| row.after >= 0.0)
            .map(|row| {
                if sample_type.is_change() {
                    format!("{} {} {}", row.stack, row.before, row.after)
                } else {
                    format!("{} {}", row.stack, row.after)
                }
            })
            .collect();
        let title = format!(
            "memsentry {}: {sample_type}",
            if self.is_diff() {
                "heap diff"
            } else {
                "heap profile"
            }
        );
        if lines.iter().all(|line| line.ends_with(" 0")) {
            // inferno refuses empty input; an empty profile is still a valid picture.
            return write!(
                writer,
                r#"<?xml version="1.0" standalone="no"?><svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg"><text x="10" y="30" font-family="Verdana" font-size="14">{title}: no samples</text></svg>"#
            );
        }
        let mut options = Options::default();
        options.title = title;
        options.subtitle = Some(self.flamegraph_subtitle(sample_type, negative));
        options.count_name = if sample_type.is_space() {
            "bytes"
        } else {
            "objects"
        }
        .to_owned();
        options.name_type = "Function:".to_owned();
        options.colors = Palette::Basic(BasicPalette::Mem);
        // Colours derive from names, so two graphs of one program look alike.
        options.hash = true;
        flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), writer)
    }

    fn flamegraph_subtitle(&self, sample_type: SampleType, negative: usize) -> String {
        let mut subtitle = format!("sampled every {} on average", Bytes(self.sample_rate));
        if let Some(base) = self.base {
            let earlier = self
                .taken_at
                .duration_since(base.taken_at)
                .unwrap_or_default();
            subtitle.push_str(&format!(
                "; diff against a base taken {:.1} s earlier",
                earlier.as_secs_f64()
            ));
            if sample_type.is_change() {
                subtitle.push_str(": red grew, blue shrank");
            }
        }
        if negative > 0 {
            subtitle.push_str(&format!(
                "; {negative} stacks with negative values left out"
            ));
        }
        subtitle
    }

    /// Writes [`flamegraph`](Profile::flamegraph) of `sample_type` to `path` (open it in
    /// a browser).
    ///
    /// # Errors
    ///
    /// [`ProfileError::Write`], naming `path`, if the file cannot be created or written.
    pub fn write_flamegraph(
        &self,
        path: impl AsRef<Path>,
        sample_type: SampleType,
    ) -> Result<(), ProfileError> {
        super::write_file(path.as_ref(), |writer| self.flamegraph(sample_type, writer))
    }
}
