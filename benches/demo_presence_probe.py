"""Can a small Llama learn the demo world's presence questions from a caption? (docs/demo.md)

A side measurement in PyTorch, not a fixture generator: a word-level imitation of the demo world's
captions and presence questions (the same phrasings, colour / shape / both targets, negations a
third of the time), loss on the yes/no answer only, a transformers LlamaForCausalLM of the demo
LLM's size (width 128, SwiGLU 344, 4 heads, 2 layers), AdamW with warm-up, batch 32. Two forms:
"short" drills (`red circle . is there not a red shape ?`) and "full" ones (a world caption, the
question and LLaVA's short-answer suffix, answered after `ASSISTANT:`). Prints held-out accuracy on
both every 100 steps (chance is 0.5).

`plan` lists phases as short_fraction:negation_probability:steps. Trained on everything at
once the model stays at chance (as anchorage's own LLM did before its curriculum); with drills
first without negation, then with, then half drills, it answers the full form (measured on the
project's VM, one thread each, about 2 minutes a run):

    python benches/demo_presence_probe.py plan=0.5:0.333:1500          # half drills from the start: both at chance
    python benches/demo_presence_probe.py ks=0 plan=1:0.333:1000       # colour drills with negation: chance
    python benches/demo_presence_probe.py ks=0 plan=1:0:300,1:0.333:1200  # the same after 300 steps without: 0.92
    python benches/demo_presence_probe.py lr=1e-3 plan=1:0:500,1:0.333:1000,0.5:0.333:1000
        # the curriculum: drills 0.97 at step 1500, full form 0.90 at 1800 and 0.96 at 2400

Other settings: ks (which targets: 0 colour, 1 shape, 2 both; default 012), layers, batch, lr.
"""
import random, sys, torch, time
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(1)
COL=["red","green","blue","black","gray","teal","brown","yellow"]; SH=["circle","rectangle","triangle"]
SIZES=["","small","large","medium"]; PLACES=["in the upper left","in the center","at the bottom","on the right"]
A=dict(a.split("=") for a in sys.argv[1:])
NEGP=float(A.get("negp","0.3333")); KS=[int(c) for c in A.get("ks","012")]; SHORT=float(A.get("short","0"))
STEPS=int(A.get("steps","1500")); LR=float(A.get("lr","3e-3")); LAYERS=int(A.get("layers","2")); B=int(A.get("batch","32"))
SUFFIX=" answer the question using a single word or phrase . ASSISTANT:"
def caption(c,s):
    w=random.choice(SIZES); sized=f"{w} {c} {s}".strip()
    return random.choice([f"a {sized} {random.choice(PLACES)}", f"a {c} {s} on a light background", f"a {sized} on a plain background", f"a {c} {s}"])
def presence(c,s,yes):
    neg=random.random()<NEGP; present= yes!=neg
    k=random.choice(KS)
    if k==0: x=(c if present else random.choice([o for o in COL if o!=c]))+" shape"
    elif k==1: x=(s if present else random.choice([o for o in SH if o!=s]))
    else:
        cc,ss=c,s
        if not present:
            j=random.randrange(3)
            if j in(0,2): cc=random.choice([o for o in COL if o!=c])
            if j in(1,2): ss=random.choice([o for o in SH if o!=s])
        x=f"{cc} {ss}"
    q=random.choice([f"is there not a {x}?",f"is there not a {x} in the image?",f"does the image not contain a {x}?",f"is no {x} present?",f"is there no {x} in the image?",f"does this picture not show a {x}?"]) if neg else random.choice([f"is there a {x}?",f"is there a {x} in the image?",f"does the image contain a {x}?",f"is a {x} present?",f"can you see a {x}?",f"does this picture show a {x}?"])
    return q, "yes" if yes else "no"
vocab={}
def tok(text):
    out=[]
    for w in text.replace("?"," ?").split():
        if w not in vocab: vocab[w]=len(vocab)+3
        out.append(vocab[w])
    return out
def sample(short):
    c=random.choice(COL); s=random.choice(SH); yes=random.random()<0.5
    q,a=presence(c,s,yes)
    if short: pre=f"{c} {s} . {q}"
    else: pre=caption(c,s)+" "+q+SUFFIX
    return [1]+tok(pre), tok(a)[0]
random.seed(0); torch.manual_seed(0)
for w in COL+SH+["yes","no"]: tok(w)
cfg=LlamaConfig(vocab_size=600,hidden_size=128,intermediate_size=344,num_hidden_layers=LAYERS,num_attention_heads=4,num_key_value_heads=4,max_position_embeddings=256)
m=LlamaForCausalLM(cfg); opt=torch.optim.AdamW(m.parameters(),lr=LR,weight_decay=0.01)
sched=torch.optim.lr_scheduler.LambdaLR(opt,lambda i: min(1,(i+1)/50))
def batchit(n, short_frac):
    S=[sample(random.random()<short_frac) for _ in range(n)]; L=max(len(x) for x,_ in S)
    ids=torch.zeros(n,L,dtype=torch.long); last=torch.zeros(n,dtype=torch.long); tgt=torch.tensor([y for _,y in S])
    for i,(x,_) in enumerate(S): ids[i,:len(x)]=torch.tensor(x); last[i]=len(x)-1
    att=(torch.arange(L)[None]<=last[:,None]).long()
    return ids,att,last,tgt
t=time.time()
PLAN=[(float(a),float(b),int(c)) for a,b,c in (p.split(":") for p in A.get("plan","%s:%s:%d"%(SHORT,NEGP,STEPS)).split(","))]
sched_list=[]
for sf,np_,n in PLAN: sched_list+= [(sf,np_)]*n
STEPS=len(sched_list)
for step in range(STEPS):
    SHORTF,NEGP=sched_list[step]
    ids,att,last,tgt=batchit(B, SHORTF)
    logits=m(input_ids=ids,attention_mask=att).logits[torch.arange(B),last]
    loss=torch.nn.functional.cross_entropy(logits,tgt)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step(); sched.step()
    if (step+1)%100==0:
        with torch.no_grad():
            r=[]
            NEGP=0.3333
            for sf in (1.0,0.0):
                ids,att,last,tgt=batchit(400,sf)
                r.append((m(input_ids=ids,attention_mask=att).logits[torch.arange(400),last].argmax(-1)==tgt).float().mean().item())
        print(f"{A} step {step+1} loss {loss.item():.3f} short {r[0]:.3f} full {r[1]:.3f} {time.time()-t:.0f}s",flush=True)
