using EdgeLM.Inference;

namespace EdgeLM.Tests.Inference;

/// <summary>
/// A session reads a model's norm weights and biases from their tensors once: later sessions on the same weights
/// must not read the tensors again, because in a mapped file that faults back in the released pages of the packed
/// matrices around them (resident memory of a second session grew by a fifth of the weights).
/// </summary>
public sealed unsafe class SessionConstantsTests
{
    [Fact]
    public void SecondSessionDoesNotReadNormsOrBiasesAgain()
    {
        using var model = new TinyModel(new TinyModelSpec());
        int[] tokens = [3, 17, 42, 5];
        float[] expected;
        using (var first = new InferenceSession(model.Config, model.Weights, 16, 1))
            expected = first.Forward(tokens).ToArray();
        Assert.All(expected, x => Assert.True(float.IsFinite(x)));

        // Poisoned in place: a session that read them again would produce NaN logits.
        var layer = model.Weights.Layers[0];
        foreach (var t in new[] { layer.AttnNorm, layer.FfnNorm, layer.Bq!, layer.Bk!, layer.Bv!, model.Weights.OutputNorm })
            new Span<float>(t.Data, checked((int)t.ElementCount)).Fill(float.NaN);

        using var second = new InferenceSession(model.Config, model.Weights, 16, 1);
        Assert.Equal(expected, second.Forward(tokens).ToArray());
    }

    [Fact]
    public void ConstantValuesAreReadOncePerTensor()
    {
        using var model = new TinyModel(new TinyModelSpec());
        var norm = model.Weights.OutputNorm;
        var values = new Span<float>(norm.Data, checked((int)norm.ElementCount));
        float[] read = ForwardPass.ConstantValues(norm);
        Assert.Equal(values.ToArray(), read);

        values.Fill(float.NaN);
        Assert.Same(read, ForwardPass.ConstantValues(norm));
        Assert.All(read, x => Assert.True(float.IsFinite(x)));
    }
}
