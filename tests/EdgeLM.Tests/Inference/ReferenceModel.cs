using EdgeLM.Models;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Inference;

/// <summary>
/// The forward pass in float64, written like llama2.c: plain loops over float[] copies of the weights, one token at a
/// time, with its own KV cache. The engine must agree with it; nothing here is shared with the engine's kernels.
/// </summary>
internal sealed class ReferenceModel
{
    /// <summary>One layer's weights as float arrays in PyTorch [out, in] row order. QNorm/KNorm: Qwen3's per-head
    /// RMSNorm of q and k (head_dim values), applied before RoPE when present.</summary>
    public sealed record Layer(float[] AttnNorm, float[] Wq, float[] Wk, float[] Wv, float[] Wo, float[]? Bq, float[]? Bk, float[]? Bv,
        float[] FfnNorm, float[] Gate, float[] Up, float[] Down, float[]? QNorm = null, float[]? KNorm = null);

    private readonly ModelConfig c;
    private readonly float[] embedding, outputNorm, output;
    private readonly Layer[] layers;

    public ReferenceModel(ModelConfig config, ModelWeights w)
    {
        c = config;
        embedding = Dequantize.ToFloat(w.TokenEmbedding);
        outputNorm = Dequantize.ToFloat(w.OutputNorm);
        output = Dequantize.ToFloat(w.Output);
        static float[]? Opt(EdgeLM.Tensors.Tensor? t) => t is null ? null : Dequantize.ToFloat(t);
        layers = w.Layers.Select(l => new Layer(Dequantize.ToFloat(l.AttnNorm), Dequantize.ToFloat(l.Wq), Dequantize.ToFloat(l.Wk),
            Dequantize.ToFloat(l.Wv), Dequantize.ToFloat(l.Wo), Opt(l.Bq), Opt(l.Bk), Opt(l.Bv), Dequantize.ToFloat(l.FfnNorm),
            Dequantize.ToFloat(l.Gate), Dequantize.ToFloat(l.Up), Dequantize.ToFloat(l.Down), Opt(l.QNorm), Opt(l.KNorm))).ToArray();
    }

    /// <summary>A reference built from weights the caller mapped itself (e.g. straight from a checkpoint's own layout).</summary>
    public ReferenceModel(ModelConfig config, float[] embedding, float[] outputNorm, float[] output, Layer[] layers)
    {
        c = config;
        this.embedding = embedding;
        this.outputNorm = outputNorm;
        this.output = output;
        this.layers = layers;
    }

    /// <summary>Logits after each token of <paramref name="tokens"/>, processed from position 0.</summary>
    public double[][] Logits(int[] tokens)
    {
        int d = c.HiddenSize, hd = c.HeadDim, kvDim = c.KvDim, T = tokens.Length;
        var keyCache = new double[c.LayerCount, T, kvDim];
        var valueCache = new double[c.LayerCount, T, kvDim];
        var result = new double[T][];
        for (int pos = 0; pos < T; pos++)
        {
            double[] x = new double[d];
            for (int i = 0; i < d; i++) x[i] = embedding[tokens[pos] * d + i];
            for (int l = 0; l < c.LayerCount; l++)
            {
                var L = layers[l];
                double[] h = RmsNorm(x, L.AttnNorm);
                double[] q = MatVec(L.Wq, h, L.Bq), k = MatVec(L.Wk, h, L.Bk), v = MatVec(L.Wv, h, L.Bv);
                if (L.QNorm != null) HeadRmsNorm(q, L.QNorm);
                if (L.KNorm != null) HeadRmsNorm(k, L.KNorm);
                Rope(q, pos); Rope(k, pos);
                for (int i = 0; i < kvDim; i++) { keyCache[l, pos, i] = k[i]; valueCache[l, pos, i] = v[i]; }

                double[] attn = new double[c.QDim];
                for (int head = 0; head < c.HeadCount; head++)
                {
                    int kvHead = head / (c.HeadCount / c.KvHeadCount);
                    double[] scores = new double[pos + 1];
                    for (int t = 0; t <= pos; t++)
                    {
                        double s = 0;
                        for (int i = 0; i < hd; i++) s += q[head * hd + i] * keyCache[l, t, kvHead * hd + i];
                        scores[t] = s / Math.Sqrt(hd);
                    }
                    double max = scores.Max(), sum = 0;
                    for (int t = 0; t <= pos; t++) { scores[t] = Math.Exp(scores[t] - max); sum += scores[t]; }
                    for (int t = 0; t <= pos; t++)
                        for (int i = 0; i < hd; i++) attn[head * hd + i] += scores[t] / sum * valueCache[l, t, kvHead * hd + i];
                }
                double[] o = MatVec(L.Wo, attn, null);
                for (int i = 0; i < d; i++) x[i] += o[i];

                h = RmsNorm(x, L.FfnNorm);
                double[] g = MatVec(L.Gate, h, null), u = MatVec(L.Up, h, null);
                for (int i = 0; i < g.Length; i++) g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
                double[] down = MatVec(L.Down, g, null);
                for (int i = 0; i < d; i++) x[i] += down[i];
            }
            result[pos] = MatVec(output, RmsNorm(x, outputNorm), null);
        }
        return result;
    }

    private double[] RmsNorm(double[] x, float[] weight)
    {
        double ss = 0;
        foreach (double v in x) ss += v * v;
        double scale = 1 / Math.Sqrt(ss / x.Length + c.RmsNormEps);
        return x.Select((v, i) => v * scale * weight[i]).ToArray();
    }

    private void HeadRmsNorm(double[] vec, float[] weight)
    {
        int hd = c.HeadDim;
        for (int head = 0; head < vec.Length / hd; head++)
        {
            double[] part = RmsNorm(vec[(head * hd)..((head + 1) * hd)], weight);
            Array.Copy(part, 0, vec, head * hd, hd);
        }
    }

    // w holds rows of x.Length weights (ggml order): y[r] = dot(row r, x) + b[r].
    private static double[] MatVec(float[] w, double[] x, float[]? bias)
    {
        int rows = w.Length / x.Length;
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = bias?[r] ?? 0;
            for (int i = 0; i < x.Length; i++) s += w[r * x.Length + i] * x[i];
            y[r] = s;
        }
        return y;
    }

    private void Rope(double[] vec, int pos)
    {
        int hd = c.HeadDim;
        for (int head = 0; head < vec.Length / hd; head++)
            for (int i = 0; i < hd / 2; i++)
            {
                double angle = pos * Math.Pow(c.RopeTheta, -2.0 * i / hd);
                int a = c.RopeStyle == RopeStyle.Neox ? head * hd + i : head * hd + 2 * i;
                int b = c.RopeStyle == RopeStyle.Neox ? a + hd / 2 : a + 1;
                double x0 = vec[a], x1 = vec[b];
                vec[a] = x0 * Math.Cos(angle) - x1 * Math.Sin(angle);
                vec[b] = x0 * Math.Sin(angle) + x1 * Math.Cos(angle);
            }
    }
}
