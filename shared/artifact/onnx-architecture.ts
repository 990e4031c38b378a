import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The dense layers an exported model.onnx holds, as its manifest's `architecture` lists them. */
export interface OnnxArchitecture {
  inputs: number;
  /** Units per layer, the output layer last (e.g. [128, 128, 128, 3]). */
  layers: number[];
  params: number;
  /** As the manifest counts them (flopsPerSample in shared/model/dense-network.ts): a multiply and an add per weight, an add per bias. */
  flopsPerSample: number;
  /**
   * Values the graph holds beyond its dense layers and its standardization (initializers of other
   * names, Constant nodes' tensors): none in a model exportOnnx wrote. Weights a manifest does not
   * count (a signed model that hides a 26-million-value matrix behind the layers it lists).
   */
  unlistedValues: number;
}

/** The initializers exportOnnx writes besides the layers' (input_scale: before the standardization was folded into the first layer). */
const STANDARDIZATION = new Set(['input_mean', 'input_scale', 'target_scale', 'target_mean']);

/** How many values a tensor holds (the product of its dims). */
function valuesOf(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * Math.max(dim, 0), 1);
}

/**
 * The dense layers of a model.onnx written by exportOnnx (its `dense_N/kernel` [inputs, units]
 * and `dense_N/bias` [units] initializers, N from 0), or undefined for one that does not have them
 * in that form (another exporter's, or not ONNX): then nothing can be said of its layers.
 */
export function onnxArchitecture(bytes: Uint8Array): OnnxArchitecture | undefined {
  let model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch {
    return undefined;
  }
  const dims = new Map<string, number[]>();
  // dims are int64: numbers, or Long objects where protobufjs has long.js (String() reads both).
  for (const tensor of model.graph?.initializer ?? []) if (tensor.name) dims.set(tensor.name, (tensor.dims ?? []).map((dim) => Number(String(dim))));
  const layers: number[] = [];
  const layerNames = new Set<string>();
  let inputs = 0;
  let params = 0;
  let flops = 0;
  for (let n = 0; dims.has(`dense_${n}/kernel`); n++) {
    const kernel = dims.get(`dense_${n}/kernel`)!;
    const bias = dims.get(`dense_${n}/bias`);
    if (kernel.length !== 2 || !bias || bias.length !== 1 || bias[0] !== kernel[1]) return undefined;
    if (n === 0) inputs = kernel[0]!;
    else if (kernel[0] !== layers.at(-1)) return undefined;
    layers.push(kernel[1]!);
    layerNames.add(`dense_${n}/kernel`).add(`dense_${n}/bias`);
    params += kernel[0]! * kernel[1]! + kernel[1]!;
    flops += 2 * kernel[0]! * kernel[1]! + kernel[1]!;
  }
  if (layers.length === 0) return undefined;
  let unlistedValues = 0;
  for (const [name, tensorDims] of dims) {
    if (layerNames.has(name)) continue;
    if (STANDARDIZATION.has(name) && valuesOf(tensorDims) <= Math.max(inputs, 1)) continue;
    unlistedValues += valuesOf(tensorDims);
  }
  for (const node of model.graph?.node ?? []) {
    for (const attribute of node.attribute ?? []) {
      if (attribute.t) unlistedValues += valuesOf((attribute.t.dims ?? []).map((dim) => Number(String(dim))));
      for (const tensor of attribute.tensors ?? []) unlistedValues += valuesOf((tensor.dims ?? []).map((dim) => Number(String(dim))));
    }
  }
  return { inputs, layers, params, flopsPerSample: flops, unlistedValues };
}
