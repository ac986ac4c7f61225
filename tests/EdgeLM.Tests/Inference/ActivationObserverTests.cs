using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Tests.Inference;

public class ActivationObserverTests
{
    private sealed class Recorder : IActivationObserver
    {
        public readonly List<(int Layer, ActivationSite Site, int N, int Width, float[] Rows)> Calls = [];
        public void Observe(int layer, ActivationSite site, ReadOnlySpan<float> rows, int n, int width) =>
            Calls.Add((layer, site, n, width, rows.ToArray()));
    }

    [Fact]
    public void SeesEverySiteOfEveryLayerWithTheRightWidths()
    {
        using var model = new TinyModel(new TinyModelSpec(Layers: 3));
        using var session = new InferenceSession(model.Config, model.Weights, threads: 1);
        var recorder = new Recorder();
        session.Observer = recorder;
        var logits = session.Forward(model.RandomTokens(5, seed: 2)).ToArray();

        var c = model.Config;
        Assert.Equal(3 * 6, recorder.Calls.Count);
        foreach (var call in recorder.Calls)
        {
            Assert.Equal(5, call.N);
            int expected = call.Site switch
            {
                ActivationSite.AttentionOutput => c.QDim,
                ActivationSite.FfnHidden => c.IntermediateSize,
                _ => c.HiddenSize,
            };
            Assert.Equal(expected, call.Width);
            Assert.Equal(5 * expected, call.Rows.Length);
        }
        // The residual stream leaving block l is the one entering block l + 1.
        var outputs = recorder.Calls.Where(x => x.Site == ActivationSite.BlockOutput).ToArray();
        var inputs = recorder.Calls.Where(x => x.Site == ActivationSite.BlockInput).ToArray();
        Assert.Equal(outputs[0].Rows, inputs[1].Rows);
        Assert.NotEqual(inputs[0].Rows, outputs[0].Rows);

        // Observing changes nothing.
        using var plain = new InferenceSession(model.Config, model.Weights, threads: 1);
        Assert.Equal(logits, plain.Forward(model.RandomTokens(5, seed: 2)).ToArray());
    }
}

public class SharedPoolTests
{
    [Fact]
    public void SessionsSharingAPoolGiveTheSameLogitsAsOwnPoolsAndLeaveThePoolUsable()
    {
        using var model = new TinyModel(new TinyModelSpec());
        int[] tokens = model.RandomTokens(6, seed: 4);
        using var own = new InferenceSession(model.Config, model.Weights, threads: 2);
        float[] expected = own.Forward(tokens).ToArray();

        using var pool = new EdgeLM.Kernels.WorkerPool(2);
        for (int i = 0; i < 2; i++)
        {
            using var shared = new InferenceSession(model.Config, model.Weights, 0, pool);
            Assert.Equal(expected, shared.Forward(tokens).ToArray());
        }
        // Disposing the sessions did not dispose the shared pool.
        using var again = new InferenceSession(model.Config, model.Weights, 0, pool);
        Assert.Equal(expected, again.Forward(tokens).ToArray());
    }
}
