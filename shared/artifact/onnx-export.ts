import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { validateNetwork, type DenseLayer, type DenseNetwork } from '../model/dense-network.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from './onnx-io.ts';

export { ONNX_INPUT, ONNX_OUTPUT };

const { onnx } = onnxProto;
const IR_VERSION = 8;
const OPSET = 13;
const BATCH_DIM = 'batch';

export interface OnnxExportOptions {
  producer?: string;
  /** ModelProto.producer_version: the fleetprune that wrote it (tools such as Netron show it). */
  producerVersion?: string;
  docString?: string;
}

/**
 * Beyond this |mean| / scale for some feature, folding the mean into the first bias would lose
 * float32 precision (x·w/scale and mean·w/scale nearly cancel), so the graph keeps an explicit Sub.
 */
export const MAX_FOLDED_MEAN_RATIO = 10;

/**
 * Serializes a DenseNetwork as an ONNX model (IR 8, opset 13) that takes raw features:
 * `features` [batch, nFeatures] float32 → per layer MatMul, Add, then Relu / Softmax(axis=-1) /
 * nothing → for regression Mul target scale, Add target mean → `output` [batch, nOutputs].
 * Weights are float32 initializers stored as little-endian raw_data.
 *
 * The standardization (x − mean) / scale is folded into the first layer — its kernel divided by
 * the scale and, when every |mean| / scale ≤ MAX_FOLDED_MEAN_RATIO, the mean moved into its bias
 * (else a Sub node centres the input) — so no per-call pass over the input is spent on it. For
 * wide inputs (784 pixels) that pass cost more than the pruned network itself.
 */
export function exportOnnx(network: DenseNetwork, opts: OnnxExportOptions = {}): Uint8Array {
  validateNetwork(network);
  const graph = new GraphBuilder();
  const inputs = network.inputMean.length;

  const { layers, centreInput } = foldStandardization(network);
  let tensor = ONNX_INPUT;
  if (centreInput) tensor = graph.node('Sub', [tensor, graph.initializer('input_mean', [inputs], network.inputMean)], 'input/centered');
  layers.forEach((layer, index) => {
    const prefix = `dense_${index}`;
    const kernel = graph.initializer(`${prefix}/kernel`, [layer.inputs, layer.units], layer.weights);
    const bias = graph.initializer(`${prefix}/bias`, [layer.units], layer.bias);
    tensor = graph.node('MatMul', [tensor, kernel], `${prefix}/matmul`);
    tensor = graph.node('Add', [tensor, bias], `${prefix}/biased`);
    if (layer.activation === 'relu') tensor = graph.node('Relu', [tensor], `${prefix}/relu`);
    if (layer.activation === 'softmax') tensor = graph.node('Softmax', [tensor], `${prefix}/softmax`, [intAttribute('axis', -1)]);
  });
  if (network.target) {
    const scale = graph.initializer('target_scale', [1], Float32Array.of(network.target.scale));
    const mean = graph.initializer('target_mean', [1], Float32Array.of(network.target.mean));
    tensor = graph.node('Mul', [tensor, scale], 'target/scaled');
    tensor = graph.node('Add', [tensor, mean], 'target/destandardized');
  }
  graph.renameLastOutput(ONNX_OUTPUT);

  const outputs = network.layers.at(-1)?.units ?? inputs;
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: opts.producer ?? 'fleetprune',
    producerVersion: opts.producerVersion ?? '',
    docString: opts.docString ?? '',
    graph: {
      name: 'fleetprune_dense',
      node: graph.nodes,
      initializer: graph.initializers,
      input: [floatValueInfo(ONNX_INPUT, inputs)],
      output: [floatValueInfo(ONNX_OUTPUT, outputs)],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** The network's layers with the standardization folded into the first one (see exportOnnx). */
export function foldStandardization(network: DenseNetwork): { layers: DenseLayer[]; centreInput: boolean } {
  const [first, ...rest] = network.layers;
  if (!first) return { layers: [], centreInput: true };
  const { inputMean: mean, inputScale: scale } = network;
  const centreInput = Array.from(mean).some((m, i) => Math.abs(m) / scale[i]! > MAX_FOLDED_MEAN_RATIO);
  const weights = new Float32Array(first.weights.length);
  const bias = Float64Array.from(first.bias);
  for (let i = 0; i < first.inputs; i++) {
    for (let j = 0; j < first.units; j++) {
      const w = first.weights[i * first.units + j]! / scale[i]!;
      weights[i * first.units + j] = w;
      if (!centreInput) bias[j]! -= mean[i]! * w;
    }
  }
  return { layers: [{ ...first, weights, bias: Float32Array.from(bias) }, ...rest], centreInput };
}

class GraphBuilder {
  readonly nodes: OnnxTypes.INodeProto[] = [];
  readonly initializers: OnnxTypes.ITensorProto[] = [];

  /** Adds a float32 initializer and returns its name. */
  initializer(name: string, dims: number[], values: Float32Array): string {
    const rawData = new Uint8Array(values.length * 4);
    const view = new DataView(rawData.buffer);
    values.forEach((value, i) => view.setFloat32(i * 4, value, true));
    this.initializers.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData });
    return name;
  }

  /** Adds a node with one output, named `output`, and returns that name. */
  node(opType: string, input: string[], output: string, attribute: OnnxTypes.IAttributeProto[] = []): string {
    this.nodes.push({ name: output, opType, input, output: [output], attribute });
    return output;
  }

  renameLastOutput(name: string): void {
    this.nodes.at(-1)!.output = [name];
  }
}

function intAttribute(name: string, value: number): OnnxTypes.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
}

function floatValueInfo(name: string, width: number): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: [{ dimParam: BATCH_DIM }, { dimValue: width }] },
      },
    },
  };
}
