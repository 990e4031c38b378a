/**
 * The input and output names of every fleetprune ONNX model: `features` float32 [batch, nFeatures]
 * of raw features in, `output` [batch, nOutputs] out. Kept apart from the exporter so a device
 * running models does not load the ONNX protobuf schema.
 */
export const ONNX_INPUT = 'features';
export const ONNX_OUTPUT = 'output';
