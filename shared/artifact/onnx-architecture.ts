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
    params += kernel[0]! * kernel[1]! + kernel[1]!;
    flops += 2 * kernel[0]! * kernel[1]! + kernel[1]!;
  }
  return layers.length > 0 ? { inputs, layers, params, flopsPerSample: flops } : undefined;
}
