namespace EdgeLM.Inference;

/// <summary>Where in a transformer block an observer sees the activations.</summary>
public enum ActivationSite
{
    /// <summary>The residual stream entering the block (hidden size).</summary>
    BlockInput,
    /// <summary>RMSNorm output feeding the q, k and v projections (hidden size).</summary>
    AttentionInput,
    /// <summary>Attention output feeding the output projection (heads x head dim).</summary>
    AttentionOutput,
    /// <summary>RMSNorm output feeding the gate and up projections (hidden size).</summary>
    FfnInput,
    /// <summary>silu(gate) * up, feeding the down projection (ffn size).</summary>
    FfnHidden,
    /// <summary>The residual stream leaving the block (hidden size).</summary>
    BlockOutput,
}

/// <summary>
/// Sees the inputs of every linear layer and the residual stream around every block while a session runs:
/// what calibration needs (importance matrices, GPTQ Hessians, AWQ scales, block influence for pruning).
/// Called on the session's thread with n rows of width floats; the span is only valid during the call.
/// </summary>
public interface IActivationObserver
{
    void Observe(int layer, ActivationSite site, ReadOnlySpan<float> rows, int n, int width);
}
