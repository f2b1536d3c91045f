# temporary design sweep (deleted after use): train gen variants on CUDA, judge on held-out generated faces
import json, sys, time, os
import numpy as np
sys.path.insert(0, "server")
from omokage.catalog.generate import generate_catalog
from omokage.catalog.store import Catalog
from omokage.features.generator import ResidualDecoder
from omokage.bench.generator import rmse, sharpness
out = os.environ.get("OUT", "/tmp")
t = time.time()
path = generate_catalog("/tmp/cat", count=1500, seed=0, image_size=200, progress=False)
print("catalog", time.time() - t, flush=True)
X = Catalog(path).matrix()
order = np.random.default_rng(0).permutation(len(X)); te, tr = np.sort(order[:150]), np.sort(order[150:])
Xtr, Xte = X[tr], X[te]
configs = [dict(edge_weight=0.0), dict(edge_weight=0.02), dict(edge_weight=0.05), dict(edge_weight=0.1),
           dict(edge_weight=0.05, epochs=40), dict(edge_weight=0.05, width=48), dict(edge_weight=0.05, residual_size=128),
           dict(edge_weight=0.05, residual_size=128, conv_size=64), dict(edge_weight=0.05, latent_noise=0.1),
           dict(edge_weight=0.05, learning_rate=1e-3), dict(edge_weight=0.05, batch_size=16), dict(edge_weight=0.0, residual_size=128)]
rows = []
for c in configs:
    t = time.time()
    m = ResidualDecoder(device="cuda", progress=False, **c).fit(Xtr)
    ft = time.time() - t
    Z = m.transform(Xte); P = m.pca_inverse_transform(Z); G = m.inverse_transform(Z)
    row = dict(cfg=c, fit=round(ft, 1), best=m.best_epoch_, pca=rmse(P, Xte), gen=rmse(G, Xte),
               sp=sharpness(P, Xte, 200), sg=sharpness(G, Xte, 200), sp64=sharpness(P, Xte, 200, 64), sg64=sharpness(G, Xte, 200, 64),
               val=[round(v, 5) for v in m.val_history_], val0=m.val_pca_mse_)
    rows.append(row)
    print(json.dumps(row), flush=True)
    json.dump(rows, open(f"{out}/sweep.json", "w"), indent=1)
