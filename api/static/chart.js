// Throughput: jobs finished (completed and failed events) per queue in 10-second
// buckets over the last five minutes, and a line chart of it drawn on a <canvas>.

const BUCKET_MS = 10000;
const BUCKETS = 30;  // five minutes
const AXIS_LABELS = [[0, "5 min ago"], [BUCKETS / 2, "2.5 min"], [BUCKETS - 1, "now"]];

const bucketOf = (ms) => Math.floor(ms / BUCKET_MS) * BUCKET_MS;

export class Throughput {
  #finished = new Map();  // queue -> Map(bucket start ms -> jobs finished)

  count(queue, jobs, now = Date.now()) {
    const buckets = this.#finished.get(queue) ?? new Map();
    this.#finished.set(queue, buckets);
    buckets.set(bucketOf(now), (buckets.get(bucketOf(now)) ?? 0) + jobs);
    for (const start of buckets.keys()) if (start < this.#oldest(now)) buckets.delete(start);
  }

  // Jobs per second in each bucket, oldest first; the current bucket by its elapsed part.
  perSecond(queue, now = Date.now()) {
    const buckets = this.#finished.get(queue) ?? new Map();
    return Array.from({ length: BUCKETS }, (_, i) => {
      const start = this.#oldest(now) + i * BUCKET_MS;
      return (buckets.get(start) ?? 0) / (Math.max(1000, Math.min(BUCKET_MS, now - start)) / 1000);
    });
  }

  total(queue, now = Date.now()) {
    let sum = 0;
    for (const [start, jobs] of this.#finished.get(queue) ?? []) if (start >= this.#oldest(now)) sum += jobs;
    return sum;
  }

  #oldest(now) {
    return bucketOf(now) - (BUCKETS - 1) * BUCKET_MS;
  }
}

// One line (and a light area) per queue; series[i] is drawn in colors[i], the first on top.
export function drawChart(canvas, series, colors) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const top = niceCeiling(Math.max(0, ...series.flat()));
  const left = 48, right = 12, upper = 10, lower = 22;
  const x = (i) => left + (i / (BUCKETS - 1)) * (width - left - right);
  const y = (v) => upper + (1 - v / top) * (height - upper - lower);

  g.font = "12px system-ui, sans-serif";
  g.fillStyle = "#6b7280";
  g.strokeStyle = "#e5e7eb";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const v of [0, top / 2, top]) {
    g.beginPath();
    g.moveTo(left, y(v));
    g.lineTo(width - right, y(v));
    g.stroke();
    g.fillText(`${+v.toFixed(2)}/s`, left - 6, y(v));
  }
  g.textBaseline = "top";
  for (const [i, label] of AXIS_LABELS) {
    g.textAlign = i === 0 ? "left" : i === BUCKETS - 1 ? "right" : "center";
    g.fillText(label, x(i), height - lower + 6);
  }

  g.lineWidth = 2;
  for (let index = series.length - 1; index >= 0; index--) {
    const values = series[index];
    if (!values.some((v) => v > 0)) continue;
    const line = new Path2D();
    values.forEach((v, i) => (i ? line.lineTo(x(i), y(v)) : line.moveTo(x(i), y(v))));
    const area = new Path2D(line);
    area.lineTo(x(BUCKETS - 1), y(0));
    area.lineTo(x(0), y(0));
    g.fillStyle = g.strokeStyle = colors[index % colors.length];
    g.globalAlpha = 0.12;
    g.fill(area);
    g.globalAlpha = 1;
    g.stroke(line);
  }
}

// The axis top: 1, 2 or 5 times a power of ten, at least 1/s.
function niceCeiling(value) {
  if (value <= 1) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * step).find((c) => c >= value);
}
