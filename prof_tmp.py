import time, numpy as np, cProfile, pstats
from benchmarks.generation import make_corpus
from metrics.rouge import RougeSpec, rouge_statistics, ROUGE_TYPES
h, r, s = make_corpus(5000)
rng=np.random.default_rng(0)
def split(texts):
    out=[]
    for t in texts:
        toks=t.split(" "); cut=rng.random(len(toks))<0.1
        out.append("".join(tok+("\n" if c else " ") for tok,c in zip(toks,cut)).strip())
    return out
h=split(h); r=split(r)
specs=[RougeSpec(t) for t in ROUGE_TYPES]
rouge_statistics(specs,[h],[[x] for x in r])
ts=[]
for _ in range(7):
    t=time.perf_counter(); rouge_statistics(specs,[h],[[x] for x in r]); ts.append(time.perf_counter()-t)
print(sorted(ts))
cProfile.run("rouge_statistics(specs,[h],[[x] for x in r])", "/tmp/p16")
pstats.Stats("/tmp/p16").sort_stats("tottime").print_stats(14)
