"""Prototype: region growth by colour, relevance cached per (prompt, keyframe)."""
import sys, json, copy, tempfile
import numpy as np, torch, cv2, yaml
torch.set_num_threads(1)
from pathlib import Path
import avatarstudio_ns.edit.region as R
from avatarstudio_ns.data.keyframes import avatar_keyframes
from avatarstudio_ns.eval import metrics as M
from avatarstudio_ns.eval.evaluate import EvalSettings, collect_views, pipeline_outputs
from avatarstudio_ns.guidance.loading import load_diffusion
from method_configs.edit import avatarstudio_edit_fast
sys.path.insert(0, "benchmarks"); from region_iou import _find

recon = Path(sys.argv[1]); prompts = sys.argv[2].split("|"); out = sys.argv[3]
config = copy.deepcopy(avatarstudio_edit_fast.config)
rc = yaml.load(recon.read_text(), Loader=yaml.Loader)
config.pipeline.datamanager.data = rc.pipeline.datamanager.data
config.load_dir = recon.parent / "nerfstudio_models"
config.output_dir = Path(tempfile.mkdtemp()); config.vis = "tensorboard"; config.logging.local_writer.enable = False
config.set_timestamp(); config.save_config()
trainer = config.setup(local_rank=0, world_size=1); trainer.setup()
pipeline, dm = trainer.pipeline, trainer.pipeline.datamanager
kf = avatar_keyframes(pipeline.model.get_frame_embeddings(), dm.train_dataset, dm.eval_dataset, config.pipeline.keyframes)
dm.set_keyframes(kf)
cameras = [dm.keyframe_camera(i) for i in range(len(kf))]
print("keyframes", len(kf), flush=True)
base = load_diffusion("builtin", "cpu")
views = collect_views(*pipeline_outputs(pipeline), EvalSettings(num_train_cameras=3, timestep_stride=24, clip_model=None))
pipeline.model.eval()
surfaces = [pipeline.model.canonical_surface(c) for c in views.cameras]
positions = torch.stack([s[0] for s in surfaces]); head = torch.stack([s[1] for s in surfaces]) > 0.5

cache_file = Path(out + ".relcache.pt")
cache = torch.load(cache_file) if cache_file.exists() else {}
orig = R.prompt_relevance
state = {"prompt": None, "i": 0}
def cached(base_, image, text, *a, **k):
    key = (state["prompt"], state["i"]); state["i"] += 1
    if key not in cache:
        cache[key] = orig(base_, image, text, *a, **k)
    return cache[key]
R.prompt_relevance = cached

VARIANT = {"name": None}
orig_cut = R.cut_by_colour
def grow(image, relevance, head_, threshold):
    """variant-specific growth; returns mask of pixels to set fully inside."""
    v = VARIANT["name"]
    value = relevance.detach().cpu().numpy(); on = head_.cpu().numpy()
    core = (value >= threshold + 0.1) & on
    if not core.any() or core.sum() == on.sum():
        return torch.zeros_like(head_)
    bgr = (image.detach().cpu().clamp(0, 1).numpy()[..., ::-1] * 255).round().astype(np.uint8)
    if v.startswith("grabcut"):
        labels = np.full(value.shape, cv2.GC_PR_BGD, np.uint8)
        labels[core] = cv2.GC_FGD
        labels[~on] = cv2.GC_BGD
        if v == "grabcut_lowbg":
            labels[(value < 0.1) & on] = cv2.GC_BGD
        bg, fg = np.zeros((1, 65)), np.zeros((1, 65)); cv2.setRNGSeed(0)
        cv2.grabCut(np.ascontiguousarray(bgr), labels, None, bg, fg, 5, cv2.GC_INIT_WITH_MASK)
        return torch.from_numpy(np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)) & on)
    # lab distance to core colours
    lab = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2LAB).astype(np.float32)
    lab[..., 0] *= 100 / 255; lab[..., 1:] -= 128
    core_lab = lab[core]; other = lab[on & (value < threshold - 0.1)]
    k = min(4, len(core_lab))
    _, _, centres = cv2.kmeans(core_lab, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5), 2, cv2.KMEANS_PP_CENTERS)
    d_in = np.linalg.norm(lab[..., None, :] - centres[None, None], axis=-1).min(-1)
    if len(other) >= 4:
        _, _, oc = cv2.kmeans(other, 4, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5), 2, cv2.KMEANS_PP_CENTERS)
        d_out = np.linalg.norm(lab[..., None, :] - oc[None, None], axis=-1).min(-1)
    else:
        d_out = np.full(d_in.shape, np.inf)
    tau = float(v.split("_")[1])
    return torch.from_numpy((d_in < tau) & on)

def fit_variant(prompt, variant):
    VARIANT["name"] = variant
    state["prompt"] = prompt; state["i"] = 0
    cfg = R.EditRegionConfig()
    if variant == "base":
        R.fit_edit_region(pipeline.model, cameras, base, prompt, cfg); return
    state["i"] = 0
    otsu = R.fit_edit_region(pipeline.model, cameras, base, prompt, R.EditRegionConfig(split_by_distribution=True))["threshold"]
    state["i"] = 0
    if variant == "otsu":
        return
    if variant.startswith("otsu_"):
        VARIANT["name"] = variant[5:]
        cfg = R.EditRegionConfig(threshold=otsu)
        print("otsu", otsu)
    # patch fit: emulate by colour_refinement hook replacement: relevance -> max(r, grown*scale)
    def hook(image, scaled, head_, threshold):
        g = grow(image, scaled, head_, threshold)
        # returned mask multiplies r; we want max: encode by returning a float factor
        s = scaled.clamp_min(1e-6)
        factor = torch.where(g.to(scaled.device), torch.maximum(torch.ones_like(s), (threshold + 0.1) / s), torch.ones_like(s))
        return factor
    R.cut_by_colour = hook
    import dataclasses
    cfg = dataclasses.replace(cfg, colour_refinement=True)
    R.fit_edit_region(pipeline.model, cameras, base, prompt, cfg)
    R.cut_by_colour = orig_cut

results = {}
for prompt in prompts:
    entry = _find(prompt)
    for variant in sys.argv[4].split(","):
        fit_variant(prompt, variant)
        region = (pipeline.model.edit_region(positions)[..., 0] * head).numpy()
        labels = views.resized(*region.shape[1:3]).labels
        target, fg = M.region_mask(labels, entry.regions), labels != 0
        iou = M.region_iou(region, target, fg); p, r = M.region_precision_recall(region, target, fg)
        results[f"{prompt}|{variant}"] = (iou, p, r)
        print(f"{prompt:40s} {variant:14s} IoU {iou:.3f} P {p:.3f} R {r:.3f}", flush=True)
        torch.save(cache, cache_file)
json.dump(results, open(out, "w"), indent=1)
torch.save(cache, cache_file)
