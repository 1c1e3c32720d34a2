"""Can a small Llama learn the demo world's presence questions from a caption at all? (docs/demo.md)

A side measurement in PyTorch, not a fixture generator: a word-level imitation of the demo world's
captions and presence questions (the same phrasings, negations a third of the time, colour / shape /
both targets), the caption in the context, loss on the yes/no answer only, a transformers
LlamaForCausalLM of the demo LLM's width (128, SwiGLU 344, 4 heads), AdamW with warm-up, batch 32.
Prints held-out accuracy every 250 steps (chance is 0.5).

    python benches/demo_presence_probe.py mode=lower steps=2000            # 2 layers, presence only
    python benches/demo_presence_probe.py mode=lower steps=3000 mix=1      # half colour/shape questions
    python benches/demo_presence_probe.py mode=lower steps=4000 layers=4 lr=1e-3

mode=case capitalises questions as the world does; sys=1 puts Vicuna's system prompt in front.
"""
import random, sys, torch, time
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(1)
COL=["red","green","blue","black","gray","teal","brown","yellow"]; SH=["circle","rectangle","triangle"]
SIZES=["","small","large","medium"]; PLACES=["in the upper left","in the center","at the bottom","on the right"]
def caption(c,s):
    w=random.choice(SIZES); sized=f"{w} {c} {s}".strip()
    return random.choice([f"a {sized} {random.choice(PLACES)}", f"a {c} {s} on a light background", f"a {sized} on a plain background", f"a {c} {s}"])
def case(t, mode):
    r=random.random()
    if mode=="lower": return t
    if r<0.6: return t[0].upper()+t[1:]
    if r<0.75: return t
    if r<0.9: return t.upper()
    return " ".join(w.capitalize() for w in t.split())
def presence(c,s,yes,mode):
    neg=random.random()<1/3; present= yes!=neg
    k=random.randrange(3)
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
    return case(q,mode), "yes" if yes else "no"
vocab={}
def tok(text):
    out=[]
    for w in text.replace("?"," ?").split():
        if w not in vocab: vocab[w]=len(vocab)+3
        out.append(vocab[w])
    return out
SYS="a chat between a curious human and an artificial intelligence assistant . the assistant gives helpful detailed and polite answers to the human's questions ."
MIX=False
def sample(mode, sysprompt):
    c=random.choice(COL); s=random.choice(SH); yes=random.random()<0.5
    q,a=presence(c,s,yes,mode)
    if MIX and random.random()<0.5:
        if random.random()<0.5: q,a=random.choice([f"what is the color of the {s}?","what color is the shape?"]),c
        else: q,a=random.choice(["what shape is in the image?",f"what is the {c} shape?"]),s
    pre=(SYS+" USER: " if sysprompt else "")+caption(c,s)+" "+q+" Answer the question using a single word or phrase. ASSISTANT:"
    ids=[1]+tok(pre); return ids, tok(a)[0]
def run(mode="case", layers=2, sysprompt=False, steps=2000, batch=32, lr=3e-3, width=128):
    random.seed(0); torch.manual_seed(0)
    for w in COL+SH+["yes","no"]: tok(w); tok(w.upper()); tok(w.capitalize())
    cfg=LlamaConfig(vocab_size=600,hidden_size=width,intermediate_size=344,num_hidden_layers=layers,num_attention_heads=4,num_key_value_heads=4,max_position_embeddings=256)
    m=LlamaForCausalLM(cfg); opt=torch.optim.AdamW(m.parameters(),lr=lr,weight_decay=0.01)
    sched=torch.optim.lr_scheduler.LambdaLR(opt,lambda i: min(1,(i+1)/50))
    t=time.time()
    def batchit(n):
        S=[sample(mode,sysprompt) for _ in range(n)]; L=max(len(x) for x,_ in S)
        ids=torch.zeros(n,L,dtype=torch.long); last=torch.zeros(n,dtype=torch.long); tgt=torch.tensor([y for _,y in S])
        for i,(x,_) in enumerate(S): ids[i,:len(x)]=torch.tensor(x); last[i]=len(x)-1
        att=(torch.arange(L)[None]<=last[:,None]).long()
        return ids,att,last,tgt
    for step in range(steps):
        ids,att,last,tgt=batchit(batch)
        logits=m(input_ids=ids,attention_mask=att).logits[torch.arange(batch),last]
        loss=torch.nn.functional.cross_entropy(logits,tgt)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step(); sched.step()
        if (step+1)%250==0:
            with torch.no_grad():
                ids,att,last,tgt=batchit(400)
                acc=(m(input_ids=ids,attention_mask=att).logits[torch.arange(400),last].argmax(-1)==tgt).float().mean().item()
            print(f"{mode} L{layers} sys{int(sysprompt)} step {step+1} loss {loss.item():.3f} acc {acc:.3f} {time.time()-t:.0f}s",flush=True)
args=dict(a.split("=") for a in sys.argv[1:])
MIX=args.get("mix","0")=="1"
run(mode=args.get("mode","case"),layers=int(args.get("layers",2)),sysprompt=args.get("sys","0")=="1",steps=int(args.get("steps",2000)),lr=float(args.get("lr",3e-3)))
