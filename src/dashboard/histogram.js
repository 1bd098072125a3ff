// A histogram drawn with uPlot (a canvas): bars of counts over equal bins, sized to its container.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './components.js';
import { histogram } from './store.js';

const BAR = '#4f46e5';

/**
 * The options of the chart for a given width.
 * @param {number} width
 * @param {number} height
 * @param {string} unit
 * @param {number} binWidth
 * @returns {uPlot.Options}
 */
function options(width, height, unit, binWidth) {
  const bars = uPlot.paths.bars?.({ size: [0.92, Infinity], align: 0 });
  return {
    width,
    height,
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: {
      x: { time: false, range: (_u, min, max) => [min - binWidth / 2, max + binWidth / 2] },
      y: { range: (_u, _min, max) => [0, Math.max(1, Math.ceil(max * 1.15))] },
    },
    axes: [
      {
        label: `pause (${unit})`,
        stroke: '#475569',
        grid: { show: false },
        ticks: { stroke: '#cbd5e1' },
        labelSize: 22,
      },
      {
        label: 'VMs',
        stroke: '#475569',
        grid: { stroke: '#e2e8f0', width: 1 },
        ticks: { show: false },
        labelSize: 22,
        incrs: [1, 2, 5, 10, 20, 50, 100],
      },
    ],
    series: [
      {},
      {
        label: 'VMs',
        stroke: BAR,
        fill: BAR,
        width: 0,
        points: { show: false },
        ...(bars ? { paths: bars } : {}),
      },
    ],
  };
}

/**
 * A histogram of `values` (milliseconds).
 * @param {{ values: readonly number[], height?: number, testid?: string }} props
 */
export function Histogram({ values, height = 220, testid }) {
  const box = useRef(/** @type {HTMLDivElement | null} */ (null));
  const chart = useRef(/** @type {uPlot | null} */ (null));
  const shape = useRef('');
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const { edges, counts, width: binWidth } = histogram(values);
    /** @type {uPlot.AlignedData} */
    const data = [edges.map((e) => e + binWidth / 2), counts];
    const key = `${binWidth}`;
    if (chart.current && shape.current === key) {
      chart.current.setData(data);
    } else {
      chart.current?.destroy();
      chart.current = new uPlot(options(Math.max(280, el.clientWidth), height, 'ms', binWidth), data, el);
      shape.current = key;
    }
    return undefined;
  }, [values, height]);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const observer = new ResizeObserver(() => {
      chart.current?.setSize({ width: Math.max(280, el.clientWidth), height });
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      chart.current?.destroy();
      chart.current = null;
    };
  }, [height]);
  return html`<div class="chart" ref=${box} data-testid=${testid}></div>`;
}
