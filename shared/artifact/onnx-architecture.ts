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

type Model = ReturnType<typeof onnx.ModelProto.decode>;
type Graph = NonNullable<Model['graph']>;
type Node = NonNullable<Graph['node']>[number];
type Tensor = NonNullable<Graph['initializer']>[number];
type SparseTensor = NonNullable<Graph['sparseInitializer']>[number];

const dimsOf = (tensor: Tensor | null | undefined): number[] => (tensor?.dims ?? []).map((dim) => Number(String(dim)));
const tensorValues = (tensor: Tensor | null | undefined): number => (tensor ? valuesOf(dimsOf(tensor)) : 0);
const sparseValues = (tensor: SparseTensor | null | undefined): number => (tensor ? tensorValues(tensor.values) + tensorValues(tensor.indices) : 0);

/** Values a node's attributes hold: tensors, sparse tensors, lists of numbers, and the graphs of If, Loop and Scan, whole. */
function nodeValues(node: Node): number {
  let count = 0;
  for (const attribute of node.attribute ?? []) {
    count += tensorValues(attribute.t) + sparseValues(attribute.sparseTensor);
    for (const tensor of attribute.tensors ?? []) count += tensorValues(tensor);
    for (const tensor of attribute.sparseTensors ?? []) count += sparseValues(tensor);
    count += (attribute.floats?.length ?? 0) + (attribute.ints?.length ?? 0);
    if (attribute.g) count += graphValues(attribute.g);
    for (const graph of attribute.graphs ?? []) count += graphValues(graph);
  }
  return count;
}

function graphValues(graph: Graph): number {
  let count = 0;
  for (const tensor of graph.initializer ?? []) count += tensorValues(tensor);
  for (const tensor of graph.sparseInitializer ?? []) count += sparseValues(tensor);
  for (const node of graph.node ?? []) count += nodeValues(node);
  return count;
}

/** Every value a model holds, wherever: initializers (sparse too, or stored outside the file), node attributes, subgraphs, functions. */
function modelValues(model: Model): number {
  let count = model.graph ? graphValues(model.graph) : 0;
  for (const fn of model.functions ?? []) for (const node of fn.node ?? []) count += nodeValues(node);
  return count;
}

/** Every value the model.onnx in `bytes` holds (modelValues); undefined when it is not ONNX. */
export function onnxValueCount(bytes: Uint8Array): number | undefined {
  try {
    return modelValues(onnx.ModelProto.decode(bytes));
  } catch {
    return undefined;
  }
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
  if (layers.length === 0) return undefined;
  let listed = params;
  for (const [name, tensorDims] of dims) if (STANDARDIZATION.has(name) && valuesOf(tensorDims) <= Math.max(inputs, 1)) listed += valuesOf(tensorDims);
  const unlistedValues = Math.max(modelValues(model) - listed, 0);
  return { inputs, layers, params, flopsPerSample: flops, unlistedValues };
}
