using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// How activations are quantized before an integer dot product with a weight type, as in ggml's vec_dot_type:
/// Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 (which carries d*sum for the weight's min term) for Q4_1/Q5_1, Q8_K for k-quants.
/// Block layouts are ggml's block_q8_0 / block_q8_1 / block_q8_K, so the scalar reference is Quantize.Row.
/// </summary>
public enum ActivationFormat { Q8_0, Q8_1, Q8_K }

/// <summary>
/// One weight type's integer kernel, written once as a struct so that MatMul is specialized per type at JIT time
/// (static abstract members: no virtual call in the inner loop), in the spirit of TensorPrimitives' operator structs.
/// </summary>
public unsafe interface IWeightKernel
{
    static abstract GgmlType WeightType { get; }
    static abstract ActivationFormat Activation { get; }

    /// <summary>
    /// y[c * yStride + r] = dot(weight row r, activation row c) for r &lt; rows, c &lt; cols, where weight row r starts
    /// at w + r * wStride and activation row c (k values quantized in <see cref="Activation"/> blocks) at x + c * xStride.
    /// rows and cols are small tiles chosen by the caller (cols = 1 is decode); k is a multiple of the block size.
    /// </summary>
    static abstract void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride);

    /// <summary>The plain scalar definition of one dot product, which every SIMD path is tested against.</summary>
    static abstract float DotScalar(byte* w, byte* x, int k);
}
