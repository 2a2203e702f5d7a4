//! The timeline drawn as SVG, by hand: a label column, one row per lane, bars placed on a time
//! axis that gives every event at least a few pixels, so attempts a millisecond apart stay
//! apart while a long backoff still looks long. Styles are inside the SVG, so the file stands
//! alone (`saga show ID --svg FILE`) as well as inline on a page.

use maud::{html, Markup, PreEscaped};

use super::{Lane, Outcome, Timeline};
use crate::output::{rfc3339, short};
use saga_engine::{Millis, Phase, StepKind};

const LABEL_WIDTH: f64 = 280.0;
const PLOT_WIDTH: f64 = 640.0;
const MIN_GAP: f64 = 6.0;
const ROW: f64 = 28.0;
const BAR: f64 = 16.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 28.0;

const STYLE: &str = "
.timeline text { font: 12px system-ui, sans-serif; fill: #1f2933; }
.timeline .lane-bg { fill: #f6f8fa; }
.timeline .lane.compensation .lane-bg { fill: #fdf3f0; }
.timeline .tag { fill: #6b21a8; font-weight: 600; }
.timeline .bar { stroke: #1f2933; stroke-width: 0.5; }
.timeline .bar.succeeded { fill: #2f9e5b; }
.timeline .bar.retrying { fill: #e8a33d; }
.timeline .bar.failed { fill: #d64545; }
.timeline .bar.interrupted { fill: #9aa0a6; }
.timeline .bar.running { fill: #3b82f6; }
.timeline .bar.awaiting { fill: url(#awaiting); stroke: #3b82f6; }
.timeline .wait { stroke: #e8a33d; stroke-width: 2; stroke-dasharray: 3 3; }
.timeline .pivot-line { stroke: #6b21a8; stroke-width: 1.5; stroke-dasharray: 5 4; }
.timeline .marker { fill: #1f2933; }
.timeline .marker.SagaCompleted, .timeline .marker.SagaCompensated { fill: #2f9e5b; }
.timeline .marker.SagaFailed { fill: #d64545; }
.timeline .marker.SagaAborted, .timeline .marker.SagaRetried { fill: #e8a33d; }
.timeline .axis { fill: #6b7280; }
";

/// Places times on the x axis: each distinct time at least [`MIN_GAP`] right of the one before,
/// plus its share of [`PLOT_WIDTH`] by real elapsed time.
struct Axis {
    points: Vec<(Millis, f64)>,
}

impl Axis {
    fn new(timeline: &Timeline) -> Self {
        let mut times = vec![timeline.start, timeline.end];
        for lane in &timeline.lanes {
            times.extend(lane.bars.iter().flat_map(|b| [b.from, b.to]));
            times.extend(lane.waits.iter().flat_map(|w| [w.from, w.to]));
        }
        times.extend(timeline.markers.iter().map(|m| m.at));
        times.extend(timeline.pivot_at);
        times.sort_unstable();
        times.dedup();
        let span = (timeline.end - timeline.start).max(1) as f64;
        let scale = PLOT_WIDTH / span;
        let mut points = Vec::with_capacity(times.len());
        let mut x = LABEL_WIDTH + 12.0;
        let mut previous = None;
        for t in times {
            if let Some(p) = previous {
                x += MIN_GAP + (t - p) as f64 * scale;
            }
            points.push((t, x));
            previous = Some(t);
        }
        Axis { points }
    }

    fn x(&self, t: Millis) -> f64 {
        match self.points.binary_search_by_key(&t, |p| p.0) {
            Ok(i) => self.points[i].1,
            Err(0) => self.points.first().map_or(LABEL_WIDTH, |p| p.1),
            Err(i) => self.points[i - 1].1,
        }
    }

    fn right(&self) -> f64 {
        self.points.last().map_or(LABEL_WIDTH, |p| p.1)
    }
}

/// The row (0 or 1) of each marker's label: the second when the first row's label before it
/// would overlap this one.
fn marker_rows(timeline: &Timeline, axis: &Axis) -> Vec<usize> {
    const LABEL: f64 = 90.0;
    let mut ends = [f64::MIN; 2];
    timeline
        .markers
        .iter()
        .map(|m| {
            let x = axis.x(m.at);
            let row = if x >= ends[0] { 0 } else { 1 };
            ends[row] = ends[row].max(x + LABEL);
            row
        })
        .collect()
}

/// What a lane's label says: `2. charge_payment · pivot`, or `undo charge_payment (refund)`.
pub(crate) fn label(lane: &Lane) -> String {
    match lane.phase {
        Phase::Action => {
            let mut text = format!("{}. {}", lane.index + 1, lane.step);
            match lane.kind {
                Some(StepKind::Pivot) => {}
                Some(StepKind::Retriable) => text.push_str(" · retriable"),
                _ => {}
            }
            if lane.participant {
                text.push_str(" · participant");
            }
            if let Some(group) = &lane.group {
                text.push_str(" · parallel ");
                text.push_str(group);
            }
            if let Some(waits_on) = &lane.waits_on {
                text.push_str(" · ");
                text.push_str(waits_on);
            }
            text
        }
        Phase::Compensation => match &lane.compensation {
            Some(name) => format!("undo {} ({name})", lane.step),
            None => format!("undo {}", lane.step),
        },
    }
}

/// `text` without the control characters XML forbids (an error message may carry terminal
/// colour codes), so the standalone file stays well-formed.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

fn f(x: f64) -> String {
    format!("{x:.1}")
}

/// The timeline as an `<svg>` element (with its own styles).
pub(crate) fn render(timeline: &Timeline) -> Markup {
    let axis = Axis::new(timeline);
    let width = axis.right() + 130.0; // room for the last marker's label
    let height = TOP + ROW * timeline.lanes.len() as f64 + BOTTOM;
    let plot_bottom = TOP + ROW * timeline.lanes.len() as f64;
    let span = timeline.end - timeline.start;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img"
            width=(f(width)) height=(f(height)) viewBox={ "0 0 " (f(width)) " " (f(height)) } {
            title { "Timeline: one lane per step and compensation, one bar per attempt" }
            style { (PreEscaped(STYLE)) }
            defs {
                pattern id="awaiting" width="6" height="6" patternUnits="userSpaceOnUse"
                    patternTransform="rotate(45)" {
                    rect width="6" height="6" fill="#dbeafe" {}
                    line x1="0" y1="0" x2="0" y2="6" stroke="#3b82f6" stroke-width="2" {}
                }
            }
            g class="markers" {
                @for (m, row) in timeline.markers.iter().zip(marker_rows(timeline, &axis)) {
                    @let x = axis.x(m.at);
                    @let y = 10.0 + 14.0 * row as f64;
                    g class="marker-group" data-event=(m.kind.as_str()) {
                        circle class={ "marker " (m.kind.as_str()) } cx=(f(x)) cy=(f(y)) r="5" {
                            title {
                                (m.kind.as_str()) " at " (rfc3339(m.at))
                                @if let Some(note) = &m.note { ": " (clean(note)) }
                            }
                        }
                        text x=(f(x + 8.0)) y=(f(y + 4.0)) { (m.kind.as_str().trim_start_matches("Saga")) }
                    }
                }
            }
            @for (order, lane) in timeline.lanes.iter().enumerate() {
                @let y = TOP + ROW * order as f64;
                @let phase = match lane.phase { Phase::Action => "action", Phase::Compensation => "compensation" };
                g class={ "lane " (phase) } data-lane=(lane.key()) data-phase=(phase)
                    data-step=(lane.step) data-order=(order)
                    data-kind=[lane.kind.map(|k| k.as_str())] {
                    rect class="lane-bg" x="0" y=(f(y + 2.0)) width=(f(width)) height=(f(ROW - 4.0)) {}
                    text class="label" x="8" y=(f(y + ROW / 2.0 + 4.0)) { (clean(&label(lane))) }
                    @if lane.phase == Phase::Action && lane.kind == Some(StepKind::Pivot) {
                        text class="tag" x=(f(LABEL_WIDTH - 52.0)) y=(f(y + ROW / 2.0 + 4.0)) { "◆ pivot" }
                    }
                    @for w in &lane.waits {
                        line class="wait" x1=(f(axis.x(w.from))) x2=(f(axis.x(w.to)))
                            y1=(f(y + ROW / 2.0)) y2=(f(y + ROW / 2.0)) {
                            title { "backoff " (short(w.to - w.from)) " before the next attempt" }
                        }
                    }
                    @for b in &lane.bars {
                        @let x = axis.x(b.from);
                        @let w = (axis.x(b.to) - x).max(4.0);
                        rect class={ "bar " (b.outcome.as_str()) } data-attempt=(b.attempt)
                            data-outcome=(b.outcome.as_str())
                            x=(f(x)) y=(f(y + (ROW - BAR) / 2.0)) width=(f(w)) height=(f(BAR)) rx="2" {
                            title {
                                "attempt " (b.attempt) ": " (b.outcome.as_str())
                                @if b.outcome == Outcome::Awaiting {
                                    @match &lane.waits_on {
                                        Some(on) => { " (waiting for the " (on) ")" },
                                        None => " (waiting for the participant's reply)",
                                    }
                                }
                                ", " (rfc3339(b.from)) ", " (short(b.to - b.from))
                                @if let Some(e) = &b.error { ": " (clean(e)) }
                            }
                        }
                    }
                }
            }
            @if let Some(at) = timeline.pivot_at {
                @let x = axis.x(at);
                line class="pivot-line" x1=(f(x)) x2=(f(x)) y1=(f(TOP)) y2=(f(plot_bottom)) {
                    title { "the pivot completed at " (rfc3339(at)) ": from here the saga only goes forward" }
                }
            }
            text class="axis" x=(f(LABEL_WIDTH + 12.0)) y=(f(height - 8.0)) { (rfc3339(timeline.start)) }
            text class="axis" x=(f(axis.right())) y=(f(height - 8.0)) text-anchor="end" { "+" (short(span)) }
        }
    }
}

/// The timeline as a standalone SVG document.
pub(crate) fn document(timeline: &Timeline) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n",
        render(timeline).into_string()
    )
}
